"""Run logging on the main rank: progress (percent, rate, ETA), ``metrics.jsonl`` and
TensorBoard when it is installed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

METRICS_NAME = "metrics.jsonl"


def trim_metrics(path: Path, last_step: int) -> None:
    """Drop records after ``last_step`` (a resumed run rewrites the steps it repeats)."""
    if not path.exists():
        return
    from echofm.files import atomic_write

    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line).get("step", -1)) <= last_step:
                kept.append(line)
        except (ValueError, AttributeError):
            continue  # a line cut short by a crash
    text = "".join(k + "\n" for k in kept)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: stay silent, JSONL has everything
        return None
    return SummaryWriter(log_dir=str(log_dir))


class RunLogger:
    """Progress, metrics file and TensorBoard of one run; on non-main ranks a no-op.

    ``log`` takes one record per optimiser step: it feeds the bar (tqdm on a terminal, else a
    plain line with percent, steps/s and ETA every ``print_every`` steps) and TensorBoard,
    and goes to ``metrics.jsonl`` when ``write_steps``. ``write`` appends any other record
    (a fine-tuning epoch with its validation) to the file. ``show`` names the record fields
    the bar displays; ``name`` prefixes TensorBoard tags and the bar.
    """

    def __init__(self, run_dir: Optional[Path], enabled: bool, total_steps: int, start_step: int,
                 progress: bool = True, print_every: int = 10, name: str = "train",
                 show: Sequence[str] = ("loss",), write_steps: bool = True):
        self.enabled = enabled
        self.total_steps, self.start_step = total_steps, start_step
        self.print_every = max(print_every, 1)
        self.name, self.show, self.write_steps = name, tuple(show), write_steps
        self._bar = None
        self._tb = None
        self._file = None
        self._plain = False
        self._t0 = time.perf_counter()
        if not enabled:
            return
        if run_dir is not None:
            path = Path(run_dir) / METRICS_NAME
            trim_metrics(path, start_step)
            self._file = path.open("a")
            self._tb = _tensorboard_writer(Path(run_dir) / "tensorboard")
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, desc=name)
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
        if self.write_steps:
            self.write(record)
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(f"{self.name}/{k}", v, step)
        short = {k: record[k] for k in self.show if isinstance(record.get(k), (int, float))}
        if self._bar is not None:
            self._bar.set_postfix({**{k: f"{v:.4f}" for k, v in short.items()},
                                   "clips/s": f"{record.get('clips_per_s', 0):.1f}"}, refresh=False)
            self._bar.update(step - self._bar.n)
        elif self._plain and (step % self.print_every == 0 or step == self.total_steps):
            parts = " ".join(f"{k}={v:.4f}" for k, v in short.items())
            rate = done / elapsed if elapsed > 0 else 0.0
            eta_txt = "?" if eta is None else f"{eta:.0f}s"
            print(f"{self.name} step {step}/{self.total_steps} ({100 * step / max(self.total_steps, 1):.0f}%) "
                  f"{parts} {rate:.2f} steps/s clips/s={record.get('clips_per_s', 0):.1f} eta={eta_txt}",
                  file=sys.stderr, flush=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` to metrics.jsonl (and its numbers to TensorBoard)."""
        if not self.enabled or self._file is None:
            return
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    def scalars(self, step: int, values: dict[str, Any], prefix: str) -> None:
        """Numbers of ``values`` (nested dicts flattened) to TensorBoard under ``prefix``."""
        if not self.enabled or self._tb is None:
            return
        for k, v in values.items():
            if isinstance(v, dict):
                self.scalars(step, v, f"{prefix}/{k}")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                self._tb.add_scalar(f"{prefix}/{k}", v, step)

    def message(self, text: str) -> None:
        """A line for the user (on the bar's stream); silent without progress."""
        if not self.enabled or not (self._bar is not None or self._plain):
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
