"""Model names on the Hugging Face Hub (``hf:ORG/NAME[@REVISION][/FILE]``) -> a local file.

The only module in echofm that talks to the Hub. It turns a hub name into a file in the
Hub's own cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``), downloading it once, and the
caller loads that file exactly as it loads a local path. ``HF_HUB_OFFLINE=1`` reads only
the cache. Both variables are read at each call (huggingface_hub reads them once, at its
import), so a process may change them between loads.

``huggingface_hub`` is an optional dependency (``pip install 'echofm[hub]'``), imported
only when a hub name is resolved.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from echofm.errors import EchoFMError

PREFIX = "hf:"
WEIGHT_SUFFIXES = (".pth", ".safetensors")
# A saved echofm model keeps its config (and input contract) in this file beside the weights.
COMPANION = "config.json"
INSTALL_HINT = "pip install 'echofm[hub]'"
_TRUE = {"1", "ON", "YES", "TRUE"}
_TIMEOUT_S = 10
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# ORG/NAME as the Hub spells repository ids; a revision runs to the next "/".
_NAME = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/]+))?(?:/(?P<file>.+))?$")


@dataclass(frozen=True)
class HubName:
    """A parsed ``hf:ORG/NAME[@REVISION][/FILE]`` (revision and file None when not given)."""

    repo_id: str
    revision: Optional[str] = None
    filename: Optional[str] = None

    def __str__(self) -> str:
        return (PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")
                + (f"/{self.filename}" if self.filename else ""))


@dataclass(frozen=True)
class HubFile:
    """Where a hub name came from: repository, revision asked for, commit, file, cached copy."""

    repo_id: str
    revision: str
    commit: str
    filename: str
    path: Path  # the file in the hub cache (a snapshot entry: load it, do not move it)
    cache_dir: Path
    online: bool  # the Hub answered for this revision (False: read from the cache alone)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"], d["cache_dir"] = str(self.path), str(self.cache_dir)
        return d


def is_hub_name(source) -> bool:
    """Whether ``source`` names a model on the Hub (``hf:...``) rather than a local path."""
    return isinstance(source, str) and source.startswith(PREFIX)


def parse_hub_name(source: str) -> HubName:
    """``"hf:sekeun/EchoFM@v1/echofm_vitl.pth"`` -> HubName(repo, revision, file).

    A revision holding "/" (``refs/pr/1``) cannot be written here: use its commit hash.
    """
    m = _NAME.match(source[len(PREFIX):] if is_hub_name(source) else "")
    if not m or ".." in m.group("repo").split("/") or ".." in (m.group("file") or "").split("/"):
        raise EchoFMError(f"{source}: not a hub model name (expected hf:ORG/NAME[@REVISION][/FILE])")
    return HubName(m.group("repo"), m.group("revision"), m.group("file"))


def hub_cache_dir() -> Path:
    """The Hub cache folder as huggingface_hub would choose it from the environment now."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it (1/ON/YES/TRUE), read now."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def resolve(source: str) -> HubFile:
    """The local copy of the file a hub name points to, downloaded into the cache if needed.

    Online, one request asks the Hub which commit the revision is and which files it holds;
    the file is then read from the cache when it is there, else downloaded. When
    ``HF_HUB_OFFLINE`` is set, or the Hub cannot be reached, the cache alone answers.
    Without ``/FILE`` the revision must hold exactly one ``.pth``/``.safetensors`` (for
    ``hf:sekeun/EchoFM``: ``echofm_vitl.pth``). A ``config.json`` beside ``.safetensors``
    weights (an echofm saved model) comes with them. Errors are one line (EchoFMError)
    naming the name, the reason and, when the Hub cannot be reached, the offline way.
    """
    name = parse_hub_name(source)
    hf = _import_hub(source)
    # huggingface_hub resolves the cache folder; so do we, to find the snapshot in its answer.
    cache, offline = hub_cache_dir().resolve(), hub_offline()
    revision = name.revision or "main"
    files, commit, unreachable = None, None, None
    if not offline:
        try:
            info = hf.HfApi().model_info(name.repo_id, revision=revision, timeout=_TIMEOUT_S)
            files, commit = sorted(s.rfilename for s in info.siblings or []), info.sha
        except Exception as exc:  # noqa: BLE001 - the Hub's answers become one line; no answer: the cache
            reason = _hub_reason(exc, name, revision)
            if reason is not None:
                raise EchoFMError(f"{name}: {reason}") from None
            unreachable = _one_line(exc)
    online = files is not None
    if not online:
        files = _cached_files(name, revision, cache)
        if files is None:
            raise EchoFMError(f"{name}: {_no_copy(unreachable, cache, f'revision {revision!r}')}")
    filename = name.filename or _single_weights_file(name, revision, files, online)
    if filename not in files:
        if online:
            raise EchoFMError(f"{name}: no file {filename!r} in {name.repo_id} at revision {revision!r} "
                              f"(files: {', '.join(files) or 'none'})")
        raise EchoFMError(f"{name}: {_no_copy(unreachable, cache, f'{filename} (revision {revision!r})')}")
    wanted = [filename]
    companion = Path(filename).with_name(COMPANION).as_posix()
    if filename.endswith(".safetensors") and companion in files:
        wanted.append(companion)
    paths = [_download(hf, name, f, commit or revision, cache, online) for f in wanted]
    if unreachable:
        warnings.warn(f"{name}: the Hugging Face Hub cannot be reached ({unreachable}); "
                      f"using the cached copy", stacklevel=2)
    return HubFile(repo_id=name.repo_id, revision=revision,
                   commit=Path(paths[0]).relative_to(_snapshots(cache, name.repo_id)).parts[0],
                   filename=filename, path=Path(paths[0]), cache_dir=cache, online=online)


# --- internals -------------------------------------------------------------------------

def _import_hub(source: str):
    try:
        import huggingface_hub
    except ImportError:
        raise EchoFMError(f"{source}: loading from the Hugging Face Hub needs huggingface_hub "
                          f"({INSTALL_HINT}), or pass a local file path instead") from None
    return huggingface_hub


def _snapshots(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--")) / "snapshots"


def _no_copy(unreachable: Optional[str], cache: Path, what: str) -> str:
    """Why nothing can be loaded without the Hub, and the ways to work offline."""
    if unreachable is None:
        return (f"HF_HUB_OFFLINE is set and the cache at {cache} holds no {what}; unset HF_HUB_OFFLINE "
                f"to download it once, or pass a local file path instead")
    return (f"cannot reach the Hugging Face Hub ({unreachable}) and the cache at {cache} holds no {what}; "
            f"pass a local file path instead, or fill the cache once with network and use it with "
            f"HF_HUB_OFFLINE=1 (HF_HUB_CACHE or HF_HOME choose the cache)")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _cached_files(name: HubName, revision: str, cache: Path) -> Optional[list[str]]:
    """Files of ``revision`` in the cache (None when the cache has no such snapshot)."""
    snapshots = _snapshots(cache, name.repo_id)
    ref = snapshots.parent / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    folder = snapshots / commit
    if not (_COMMIT.match(commit) or ref.is_file()) or not folder.is_dir():
        return None
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _single_weights_file(name: HubName, revision: str, files: list[str], online: bool) -> str:
    weights = [f for f in files if f.endswith(WEIGHT_SUFFIXES)]
    if len(weights) == 1:
        return weights[0]
    where = "on the Hub" if online else "in the cache"
    if not weights:
        raise EchoFMError(f"{name}: no .pth or .safetensors file {where} at revision {revision!r} "
                          f"(files: {', '.join(files) or 'none'})")
    raise EchoFMError(f"{name}: several weight files {where} at revision {revision!r} ({', '.join(weights)}); "
                      f"name one: {PREFIX}{name.repo_id}{'@' + name.revision if name.revision else ''}/{weights[0]}")


def _hub_reason(exc: BaseException, name: HubName, revision: str) -> Optional[str]:
    """A one-line reason for an answer the Hub gave (None: the Hub was not reached)."""
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return f"{name.repo_id} is gated: accept its terms on the Hub and log in (hf auth login)"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return f"no repository {name.repo_id} on the Hub (or it is private: log in with hf auth login)"
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"no revision {revision!r} in {name.repo_id}"
    if isinstance(exc, errors.HfHubHTTPError) and getattr(exc, "response", None) is not None:
        if exc.response.status_code < 500:
            return f"the Hub refused ({_one_line(exc)})"
    return None


def _download(hf, name: HubName, filename: str, revision: str, cache: Path, online: bool) -> str:
    """The cached copy of ``filename`` (fetched first when online and not yet cached)."""
    try:
        return hf.hf_hub_download(name.repo_id, filename, revision=revision, cache_dir=str(cache),
                                  local_files_only=not online, library_name="echofm")
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        reason = _hub_reason(exc, name, revision)
        if reason is None:
            reason = (f"cannot fetch {filename} ({_one_line(exc)}); pass a local file path instead, or fill "
                      f"the cache once with network and use it with HF_HUB_OFFLINE=1")
        raise EchoFMError(f"{name}: {reason}") from None
