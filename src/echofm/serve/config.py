"""What `echofm serve` runs with: paths, address, token, upload limits, how studies run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

TOKEN_ENV = "ECHOFM_SERVE_TOKEN"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MB = 2**20


class ServeWarning(UserWarning):
    """A setting of ``echofm serve`` that exposes studies more than the defaults do (e.g.
    binding beyond localhost). A warning class of its own so it reaches the user through
    ``warnings`` whatever logging is set up, and can be filtered on its own."""


@dataclass
class ServeConfig:
    """``echofm serve``'s settings.

    bundle: the model bundle every study runs with. data: the folder holding the studies
    and their SQLite index (created; kept across restarts). host/port: where to listen.
    token: a bearer token every route requires (None: no token; default from the
    ECHOFM_SERVE_TOKEN environment variable). max_upload_mb: the largest upload, checked
    while it streams in. max_files: the most members a ZIP may hold. max_unpacked_mb:
    the most a ZIP may expand to. device / precision: how the worker runs the models.
    resume_attempts: how often a job interrupted by a server stop is started again
    before it is marked failed.
    """

    bundle: Path
    data: Path
    host: str = "127.0.0.1"
    port: int = 8000
    token: Optional[str] = None
    max_upload_mb: float = 1024.0
    max_files: int = 1000
    max_unpacked_mb: float = 4096.0
    device: str = "cpu"
    precision: str = "auto"
    resume_attempts: int = 2

    def __post_init__(self):
        self.bundle, self.data = Path(self.bundle), Path(self.data)
        if self.token is None:
            self.token = os.environ.get(TOKEN_ENV) or None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_unpacked_bytes(self) -> int:
        return int(self.max_unpacked_mb * MB)

    @property
    def local_only(self) -> bool:
        return self.host in LOCAL_HOSTS
