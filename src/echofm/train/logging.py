"""Run logging on the main rank: progress bar, ``metrics.jsonl`` and TensorBoard if installed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

METRICS_NAME = "metrics.jsonl"


def trim_metrics(path: Path, last_step: int) -> None:
    """Drop records after ``last_step`` (a resumed run rewrites the steps it repeats)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line).get("step", -1)) <= last_step:
                kept.append(line)
        except (ValueError, AttributeError):
            continue  # a line cut short by a crash
    path.write_text("".join(k + "\n" for k in kept))


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: stay silent, JSONL has everything
        return None
    return SummaryWriter(log_dir=str(log_dir))


class RunLogger:
    """Writes one JSON record per logged step; on non-main ranks every method is a no-op.

    The bar shows step, loss parts, clips/s and tqdm's ETA; without a terminal (batch jobs)
    a plain line is printed every ``print_every`` steps instead.
    """

    def __init__(self, run_dir: Path, enabled: bool, total_steps: int, start_step: int,
                 progress: bool = True, print_every: int = 10):
        self.enabled = enabled
        self.total_steps, self.start_step = total_steps, start_step
        self.print_every = max(print_every, 1)
        self._bar = None
        self._tb = None
        self._file = None
        self._t0 = time.perf_counter()
        if not enabled:
            return
        path = Path(run_dir) / METRICS_NAME
        trim_metrics(path, start_step)
        self._file = path.open("a")
        self._tb = _tensorboard_writer(Path(run_dir) / "tensorboard")
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
        self._plain = progress and self._bar is None

    def log(self, step: int, record: dict[str, Any]) -> None:
        """Record metrics for optimiser step ``step`` (1-based: steps done so far)."""
        if not self.enabled:
            return
        done = step - self.start_step
        elapsed = time.perf_counter() - self._t0
        eta = elapsed / done * (self.total_steps - step) if done > 0 else None
        record = {"step": step, **record, "elapsed_s": round(elapsed, 3),
                  "eta_s": None if eta is None else round(eta, 1)}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(f"pretrain/{k}", v, step)
        short = {k: record[k] for k in ("loss", "recon", "triplet", "cycle") if k in record}
        if self._bar is not None:
            self._bar.set_postfix({**{k: f"{v:.4f}" for k, v in short.items()},
                                   "clips/s": f"{record.get('clips_per_s', 0):.1f}"}, refresh=False)
            self._bar.update(step - self._bar.n)
        elif self._plain and (step % self.print_every == 0 or step == self.total_steps):
            parts = " ".join(f"{k}={v:.4f}" for k, v in short.items())
            eta_txt = "?" if eta is None else f"{eta:.0f}s"
            print(f"step {step}/{self.total_steps} {parts} clips/s={record.get('clips_per_s', 0):.1f} "
                  f"eta={eta_txt}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
