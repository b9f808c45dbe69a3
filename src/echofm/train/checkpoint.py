"""Training checkpoints: atomic writes, safe loading, "latest good" discovery, pruning.

A checkpoint is one ``torch.save`` file ``step-00000042.pt`` holding plain data only
(tensors, numbers, strings, lists, dicts, tuples): model and optimiser state, the step,
the sampler position, the resolved config and the RNG states of every rank. Pretraining
and fine-tuning write the same format (``echofm.train.loop``); files written by the earlier
pretraining code (format ``echofm-pretrain-checkpoint/1``, the same layout) still load.
Loading uses ``torch.load(weights_only=True)`` with nothing allow-listed, so a checkpoint
can never execute code.
"""

from __future__ import annotations

import json
import random
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from echofm.errors import EchoFMError
from echofm.files import atomic_write
from echofm.train.distributed import DistContext, all_gather_objects, broadcast_object

CHECKPOINT_FORMAT = "echofm-train-checkpoint/1"
# Earlier formats with the same layout, read as they are.
COMPATIBLE_FORMATS = (CHECKPOINT_FORMAT, "echofm-pretrain-checkpoint/1")
REQUIRED_KEYS = ("format", "step", "model", "optimizer", "config", "rng", "sampler")
_NAME = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(EchoFMError):
    """A checkpoint file that cannot be used (names the file and the reason)."""


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the old files intact."""
    state = dict(state, format=CHECKPOINT_FORMAT)
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))
    return Path(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and validate a checkpoint without executing any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle globals, I/O errors
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {first})") from exc
    if not isinstance(state, dict) or state.get("format") not in COMPATIBLE_FORMATS:
        raise CheckpointError(f"{path}: not an echofm training checkpoint "
                              f"(expected format {CHECKPOINT_FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    return state


def find_resume(ctx: DistContext, resume: Optional[str], ckpt_dir: Path) -> Optional[dict]:
    """Load the state to resume from: ``auto`` (latest good in ``ckpt_dir``) or a file path.

    Rank 0 chooses, every rank loads the same file (a shared filesystem is assumed).
    """
    if not resume:
        return None
    chosen: Optional[str] = None
    if ctx.is_main:
        if resume == "auto":
            remove_stale_temp_files(ckpt_dir)
            found = latest_good_checkpoint(ckpt_dir)
            chosen = str(found[0]) if found else None
        else:
            chosen = str(Path(resume).expanduser())
    chosen = broadcast_object(ctx, chosen)
    if chosen is None:
        return None
    state = load_checkpoint(Path(chosen))
    state["_path"] = chosen
    return state


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint file, oldest first (temp files ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_good_checkpoint(directory: Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest checkpoint that loads and validates; corrupt ones are skipped with a warning."""
    for _, path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping bad checkpoint: {exc}")
    return None


def prune_checkpoints(directory: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all); returns what went."""
    if keep_last <= 0:
        return []
    old = list_checkpoints(directory)[:-keep_last]
    for _, path in old:
        path.unlink(missing_ok=True)
    return [p for _, p in old]


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Temp files left by a process killed mid-write (``.step-*.tmp``); never a finished file."""
    directory = Path(directory)
    stale = sorted(directory.glob(".step-*.pt.*.tmp")) if directory.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# --- random number generators ----------------------------------------------------------

def capture_rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python RNG states as plain data."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# --- a run's checkpoints --------------------------------------------------------------

class RunCheckpointer:
    """Writes a training run's checkpoints: on rank 0, with every rank's RNG state; all ranks
    learn whether it worked. ``extra`` (the caller's plain-data state) is read at each save;
    ``layout`` (seed, batch_size, accum_steps) goes into the sampler record."""

    def __init__(self, ctx: DistContext, ckpt_dir: Optional[Path], model, optimizer, schedule,
                 steps_per_epoch: int, keep_last: int, run_config: dict, extra: dict, layout: dict):
        self.ctx, self.model, self.optimizer, self.schedule = ctx, model, optimizer, schedule
        self.steps_per_epoch, self.ckpt_dir, self.keep_last = steps_per_epoch, ckpt_dir, keep_last
        self.run_config, self.extra, self.layout = run_config, extra, layout

    def save(self, step: int, last: dict, epoch_sums: dict) -> Optional[Path]:
        if self.ckpt_dir is None:
            return None
        """Checkpoint ``step`` (``last``: its record; ``epoch_sums``: the epoch's loss sums so far)."""
        ctx, schedule = self.ctx, self.schedule
        rng = all_gather_objects(ctx, capture_rng_state())  # a collective: every rank
        path = checkpoint_path(self.ckpt_dir, step)
        error: Optional[str] = None
        if ctx.is_main:
            epoch, into_epoch = divmod(step, self.steps_per_epoch)
            state = {
                "step": step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": {"kind": "warmup_cosine", "peak": schedule.peak, "total_steps": schedule.total_steps,
                             "warmup_steps": schedule.warmup_steps, "floor": schedule.floor},
                "scaler": None,  # bf16 autocast needs no loss scaling
                "rng": rng,
                "sampler": {"epoch": epoch, "steps_into_epoch": into_epoch, "world_size": ctx.world_size,
                            **self.layout},
                "config": self.run_config,
                "metrics": {k: v for k, v in last.items() if isinstance(v, (int, float))},
                "epoch_sums": dict(epoch_sums),
                "extra": json.dumps(self.extra, default=str),
            }
            try:
                save_checkpoint(path, state)
                prune_checkpoints(self.ckpt_dir, self.keep_last)
            except Exception as exc:  # report on every rank instead of leaving the others hanging
                error = f"{path}: checkpoint not written ({type(exc).__name__}: {exc})"
        error = broadcast_object(ctx, error)
        if error:
            raise EchoFMError(error)
        return path
