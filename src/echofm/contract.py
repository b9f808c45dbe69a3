"""The input contract: how a model's input is made, recorded with the model and read by every consumer.

A model only understands clips made the way its training clips were: so many frames per
clip, at a frame rate (the rate of the frames *inside* one clip), of a given side, with
the sector masked or not, with intensities on one scale. ``InputContract`` records this;
``save_model`` (config.json) and ``save_task_model`` (task.json) write it, loading
restores it as ``model.contract``, and every consumer (finetune, evaluate, predict, embed,
phase, reconstruct, diagnose) asks it which frame step a source needs:
``contract.frame_step_for(source_fps)``. A flag (``--frame-step``) overrides.

Rules, and the documented fallbacks:

* ``fps`` stated (a model pretrained by echofm): a source at ``source_fps`` is read every
  ``round(source_fps / fps)``-th frame (at least 1), so a clip spans the time it spanned
  in training: a model pretrained on 15 fps phantoms reads a 30 fps cine every 2nd frame.
* a source that states no frame rate (a bare ``.npy``, a folder of PNGs) is assumed to be
  at ``ASSUMED_SOURCE_FPS`` (30 fps, the usual echo rate and the rate the pretraining
  defaults assume); one warning per process says so.
* ``fps`` not stated (an untrained preset, a public EchoFM checkpoint, an echofm model
  saved before the contract existed): every source is read every ``frame_step``-th frame.

Public EchoFM checkpoints follow the public code's data loader: contiguous frames
(``frame_stride`` 1) at whatever rate the source has, resized to the model's side, RGB in
[0, 1] (``ToTensor``), no sector masking: ``public_contract(cfg)``.

Sector masking the same way: a consumer asks ``sector_masking(model.contract, flag)``, which
is the flag (``--mask-sector`` / ``--no-mask-sector``) when given, else what the model was
trained on: masked for echofm-trained models (and untrained presets), the whole image for
public EchoFM checkpoints.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Optional

ASSUMED_SOURCE_FPS = 30.0
INTENSITIES = ("[0, 1]",)  # uint8 / 255 -> [0, 1]; grey repeated to 3 channels (colour kept as RGB)

_warned: set[str] = set()


class SamplingWarning(UserWarning):
    """A source's frame rate is unknown, so the model's frame step is a guess."""


@dataclass(frozen=True)
class InputContract:
    """How a model's input clips are made.

    num_frames: frames per clip. image_size: side in pixels (square clips).
    fps: frame rate of the frames inside one clip, as in training (None: not stated, see
    the module docstring). frame_step: the step training took through its data's frames
    (phantoms are generated at ``30 / frame_step`` fps and taken every frame, the same
    clip as a 30 fps recording taken every ``frame_step`` frames, so the field records 4
    for them too); used as the step when ``fps`` is not stated.
    mask_sector: whether training clips had everything outside the ultrasound sector
    blanked (and were cropped to it), as ``echofm prepare`` does.
    intensity: ``[0, 1]``: uint8 / 255, grey repeated to three channels (no mean/std
    normalisation; the public code's ``ToTensor`` does the same).
    """

    num_frames: int
    image_size: int
    fps: Optional[float] = None
    frame_step: int = 1
    mask_sector: bool = True
    intensity: str = "[0, 1]"

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.image_size < 1:
            raise ValueError(f"num_frames and image_size must be positive, got {self.num_frames}, {self.image_size}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive or None, got {self.fps}")
        if self.frame_step < 1:
            raise ValueError(f"frame_step must be at least 1, got {self.frame_step}")
        if self.intensity not in INTENSITIES:
            raise ValueError(f"intensity must be one of {INTENSITIES}, got {self.intensity!r}")

    # -- conversion ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "InputContract":
        """Build from ``to_dict`` output; unknown keys (from a later version) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in values.items() if k in names}
        if kept.get("fps") is not None:
            kept["fps"] = float(kept["fps"])
        return cls(**kept)

    def replace(self, **changes: Any) -> "InputContract":
        return dataclasses.replace(self, **changes)

    # -- use ----------------------------------------------------------------------------
    def frame_step_for(self, source_fps: Optional[float], where: str = "a source") -> int:
        """The step through a source's frames that gives clips at this contract's rate.

        source_fps: the source's stated frame rate (None or 0: not stated, see the module
        docstring for the fallback). where: names the source in the warning.
        """
        if self.fps is None:
            return self.frame_step
        if not source_fps or source_fps <= 0:
            key = f"{self.fps}"
            if key not in _warned:
                _warned.add(key)
                warnings.warn(f"{where} states no frame rate: assuming {ASSUMED_SOURCE_FPS:g} fps, so the "
                              f"model (trained at {self.fps:g} fps) takes frame step "
                              f"{step_between(ASSUMED_SOURCE_FPS, self.fps)}; give the source's rate "
                              f"(--fps where offered) or --frame-step to choose", SamplingWarning, stacklevel=2)
            source_fps = ASSUMED_SOURCE_FPS
        return step_between(source_fps, self.fps)

    def clip_seconds(self) -> Optional[float]:
        """Time one clip spans in training (None when the rate is not stated)."""
        return None if self.fps is None else self.num_frames / self.fps


def step_between(source_fps: float, target_fps: float) -> int:
    """The integer frame step taking a ``source_fps`` video closest to ``target_fps`` (>= 1)."""
    return max(1, int(round(float(source_fps) / float(target_fps))))


def untrained_contract(cfg) -> InputContract:
    """A model that has seen no data (a preset): every frame, no stated rate."""
    return InputContract(num_frames=cfg.num_frames, image_size=cfg.img_size)


def public_contract(cfg) -> InputContract:
    """Public EchoFM checkpoints: the public loader's contiguous frames at the source's own
    rate (``frame_stride`` 1, no rate stated), RGB in [0, 1], no sector masking."""
    return InputContract(num_frames=cfg.num_frames, image_size=cfg.img_size, fps=None, frame_step=1,
                         mask_sector=False)


def contract_for(cfg, saved: Optional[dict]) -> InputContract:
    """The contract of a model of config ``cfg`` from what its file saved (None: a model
    saved before the contract existed, which gets ``untrained_contract``: every frame).
    num_frames and image_size always follow the config (they cannot disagree with the weights)."""
    if not saved:
        return untrained_contract(cfg)
    return InputContract.from_dict(saved).replace(num_frames=cfg.num_frames, image_size=cfg.img_size)


def sector_masking(contract: Optional[InputContract], flag: Optional[bool] = None) -> bool:
    """Whether to blank and crop to the ultrasound sector before a model with ``contract``
    reads a source: ``flag`` when given (the command's ``--mask-sector`` / ``--no-mask-sector``),
    else the contract's ``mask_sector``; True when there is no contract (what `echofm prepare`
    does by default)."""
    if flag is not None:
        return bool(flag)
    return True if contract is None else bool(contract.mask_sector)


def reset_warnings() -> None:
    """Forget which sampling warnings were given (tests)."""
    _warned.clear()
