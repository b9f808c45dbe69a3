"""What a task is: label encoding, loss, evaluation; and the shared evaluation loop.

A ``Task`` turns raw sample labels into tensors (``fit`` then ``encode``), gives the
loss of a batch, and evaluates a ``TaskModel`` on whole videos (``evaluate``), writing
plots when given a folder. ``run_windows`` feeds every covering window of every video
through the model (``echofm.windows``, sampled as the model's input contract asks), the
common first step of all evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch.utils.data import DataLoader

from echofm.datasets.base import Sample
from echofm.datasets.clips import VideoWindows, first_item
from echofm import windows
from echofm.windows import Sampling
from echofm.tasks.adapter import TaskModel, TaskSpec


@dataclass
class EvalOptions:
    """How evaluation samples windows: ``frame_step`` (None: what the model's input contract
    asks for each video's frame rate), ``window_step`` between window starts (None: back to
    back), at most ``max_windows`` per video, ``batch_size`` windows per forward pass."""

    frame_step: Optional[int] = None
    window_step: Optional[int] = None
    max_windows: Optional[int] = None
    batch_size: int = 8
    device: str = "cpu"
    precision: str = "fp32"
    num_workers: int = 0


def saved_eval_options(model: TaskModel, **overrides) -> EvalOptions:
    """The evaluation windows a fine-tuned model's run used (its task.json; runs saved before
    the one vocabulary named them eval_stride / eval_max_windows), then ``overrides`` that
    are not None. The frame step comes from the model's contract unless overridden."""
    saved = getattr(model, "finetune_config", {}) or {}
    values = {"window_step": saved.get("window_step", saved.get("eval_stride")),
              "max_windows": saved.get("max_windows", saved.get("eval_max_windows"))}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EvalOptions(**values)


class Task:
    """Base class; subclasses set ``name`` and implement the methods below."""

    name = ""
    default_target = ""

    def fit(self, train: list[Sample], target: Optional[str], options: dict) -> TaskSpec:
        """The TaskSpec for these training labels (classes, target statistics)."""
        raise NotImplementedError

    def usable(self, sample: Sample, spec: TaskSpec) -> Optional[str]:
        """None if the sample can be used with ``spec``, else the reason it cannot."""
        raise NotImplementedError

    def encode(self, sample: Sample, spec: TaskSpec) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model: TaskModel, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: TaskModel, samples: list[Sample], options: EvalOptions,
                 plots_dir: Optional[Path] = None) -> tuple[dict, list[dict]]:
        """(metrics, per-video prediction records) on whole videos."""
        raise NotImplementedError

    def summarise_prediction(self, outputs: torch.Tensor, spec: TaskSpec, windows, num_frames: int,
                             pixel_spacing: Optional[tuple[float, float]] = None) -> tuple[dict, Optional[Any]]:
        """What ``predict`` reports for one video from the model's per-window outputs
        (``[W, ...]``, float32 on the CPU) over ``windows`` (frame indices ``[W, F]``) of a
        ``num_frames``-frame video: (the prediction record, per-frame label maps uint8
        ``[T, S, S]`` or None). ``pixel_spacing``: mm per pixel of the model's frames."""
        raise NotImplementedError

    def prediction_columns(self, prediction: dict) -> dict:
        """The headline of a ``summarise_prediction`` record for one row of an index table:
        ``prediction`` (and ``confidence`` where the task has one)."""
        raise NotImplementedError

    @staticmethod
    def main_metric(metrics: dict) -> tuple[str, float, bool]:
        """(name, value, higher_is_better) used to keep the best checkpoint."""
        raise NotImplementedError


def run_windows(model: TaskModel, samples: list[Sample], options: EvalOptions,
                segmentation: bool = False) -> Iterator[tuple[Sample, dict, torch.Tensor]]:
    """Yield (sample, item, outputs) per video; outputs are the model's per-window outputs
    ``[W, ...]`` on the CPU in float32 (``item`` as made by ``VideoWindows``)."""
    sampling = Sampling(model.contract, options.frame_step, options.window_step, options.max_windows)
    dataset = VideoWindows(samples, sampling, model.cfg.img_size, segmentation=segmentation)
    loader = DataLoader(dataset, batch_size=1, collate_fn=first_item, num_workers=options.num_workers)
    model.eval()
    for item in loader:
        out = windows.run_windows(model, item["video"], item["indices"].numpy(), options.batch_size,
                                  options.device, options.precision)
        yield samples[item["index"]], item, out


def plots_enabled(plots_dir: Optional[Path]) -> bool:
    if plots_dir is None:
        return False
    Path(plots_dir).mkdir(parents=True, exist_ok=True)
    return True
