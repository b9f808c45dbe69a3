"""What a task is: label encoding, loss, evaluation; and the shared evaluation loop.

A ``Task`` turns raw sample labels into tensors (``fit`` then ``encode``), gives the
loss of a batch, and evaluates a ``TaskModel`` on whole videos (``evaluate``), writing
plots when given a folder. ``run_windows`` feeds every covering window of every video
through the model, the common first step of all evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch.utils.data import DataLoader

from echofm.datasets.base import Sample
from echofm.datasets.clips import VideoWindows, first_item
from echofm.precision import autocast
from echofm.tasks.adapter import TaskModel, TaskSpec


@dataclass
class EvalOptions:
    """How evaluation samples windows: frame ``period``, window ``stride`` (None = back to back),
    at most ``max_windows`` per video, ``batch_size`` windows per forward pass."""

    period: int = 1
    stride: Optional[int] = None
    max_windows: Optional[int] = None
    batch_size: int = 8
    device: str = "cpu"
    precision: str = "fp32"
    num_workers: int = 0


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
    cfg = model.cfg
    dataset = VideoWindows(samples, cfg.num_frames, cfg.img_size, options.period, options.stride,
                           segmentation=segmentation, max_windows=options.max_windows)
    loader = DataLoader(dataset, batch_size=1, collate_fn=first_item, num_workers=options.num_workers)
    model.eval()
    device = torch.device(options.device)
    with torch.no_grad():
        for item in loader:
            outs = []
            for chunk in item["clips"].split(options.batch_size):
                with autocast(options.precision, device):
                    outs.append(model(chunk.to(device)).float().cpu())
            yield samples[item["index"]], item, torch.cat(outs)


def plots_enabled(plots_dir: Optional[Path]) -> bool:
    if plots_dir is None:
        return False
    Path(plots_dir).mkdir(parents=True, exist_ok=True)
    return True
