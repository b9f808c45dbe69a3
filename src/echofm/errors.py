"""Exceptions meant for the user: each names the file (or thing) and the reason."""


class EchoFMError(Exception):
    """An error the CLI prints as one clear line with a non-zero exit."""


class ClipReadError(EchoFMError):
    """A source file could not be read as an echo clip.

    The message always names the path and the reason, e.g.
    ``"/data/a.dcm: truncated pixel data (expected 120 frames, got 37)"``.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
