"""``PretrainConfig``: everything that defines a pretraining run, loadable from one YAML file.

A YAML file fully describes a run::

    model: echofm-tiny            # a preset, or a mapping {preset: echofm-tiny, mask_ratio: 0.9}
    data: [synth:256, /data/cache]
    batch_size: 8                 # per process
    steps: 2000                   # optimiser steps (0: use epochs)
    blr: 1.0e-3                   # lr = blr * batch_size * accum_steps * world_size / 256

The resolved config (the model written out field by field) is saved as ``config.yaml`` in
the run directory, so the run can be repeated or resumed from it alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from echofm.config import PRESETS, ModelConfig, preset
from echofm.errors import EchoFMError

CONFIG_NAME = "config.yaml"


class ConfigError(EchoFMError):
    """A run config that cannot be used (names the file or key and the reason)."""


@dataclass
class PretrainConfig:
    """One pretraining run. Batch sizes are per process; steps are optimiser steps."""

    model: ModelConfig = field(default_factory=lambda: preset("echofm-tiny"))
    model_name: str = "echofm-tiny"  # the preset the model started from (for the record)
    init: Optional[str] = None  # start from these weights (saved model or public .pth)
    data: list[str] = field(default_factory=list)
    out: str = ""
    # Schedule length: ``steps`` optimiser steps, or ``epochs`` passes when steps is 0.
    epochs: int = 1
    steps: int = 0
    batch_size: int = 8
    accum_steps: int = 1
    # Optimiser (AdamW; no decay on norms, biases, positional embeddings, tokens).
    blr: float = 1.0e-3
    lr: Optional[float] = None  # absolute; overrides blr scaling when set
    min_lr: float = 0.0
    warmup_steps: Optional[int] = None  # default: warmup_fraction of all steps
    warmup_fraction: float = 0.05
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float = 0.0  # max gradient norm; 0 disables clipping
    # Hardware.
    device: str = "auto"  # auto: this rank's GPU if CUDA is available, else CPU
    precision: str = "auto"  # auto: bf16 where native (CUDA sm80+, CPU with AVX512_BF16/AMX), else fp32
    activation_checkpointing: bool = False
    compile: bool = False
    workers: int = 4  # DataLoader worker processes per rank
    # Temporal stride of the sampled window: 16 frames x 4 at 30 fps span ~2 s, about two
    # beats, which the periodic objective needs (one clip must hold repeated phases).
    frame_stride: int = 4
    augment: bool = True  # light echo augmentations on prepared-cache clips
    # Checkpoints and logging.
    checkpoint_every: int = 500  # optimiser steps; 0: only at the end
    keep_last: int = 3  # checkpoints kept (0 keeps all)
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        self.data = [str(d) for d in self.data]
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"invalid pretrain config: {msg}")

        need(self.batch_size >= 1, f"batch_size {self.batch_size} must be >= 1")
        need(self.accum_steps >= 1, f"accum_steps {self.accum_steps} must be >= 1")
        need(self.steps >= 0 and self.epochs >= 0, "steps and epochs must be >= 0")
        need(self.steps > 0 or self.epochs > 0, "set steps or epochs to a positive number")
        need(self.blr > 0 or (self.lr or 0) > 0, "the learning rate must be positive")
        need(0.0 <= self.warmup_fraction < 1.0, f"warmup_fraction {self.warmup_fraction} not in [0, 1)")
        need(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps must be >= 0")
        need(self.weight_decay >= 0, "weight_decay must be >= 0")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"betas {self.betas} invalid")
        need(self.clip_grad >= 0, "clip_grad must be >= 0 (0 disables)")
        need(self.precision in ("auto", "fp32", "bf16"), f"precision {self.precision!r} not in auto/fp32/bf16")
        need(self.workers >= 0, "workers must be >= 0")
        need(self.frame_stride >= 1, "frame_stride must be >= 1")
        need(self.checkpoint_every >= 0 and self.keep_last >= 0, "checkpoint_every/keep_last must be >= 0")

    # -- conversion ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the model written field by field (what config.yaml holds)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = self.model.to_dict()
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "PretrainConfig":
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of settings, got {type(values).__name__}")
        values = {k.replace("-", "_"): v for k, v in values.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - {"model_overrides"})
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(names))}")
        model_cfg, model_name = _resolve_model(values.pop("model", "echofm-tiny"),
                                               values.pop("model_overrides", None) or {}, source)
        values.setdefault("model_name", model_name)
        if isinstance(values.get("data"), str):
            values["data"] = [values["data"]]
        try:
            return cls(model=model_cfg, **values)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    def replace(self, **changes: Any) -> "PretrainConfig":
        return dataclasses.replace(self, **changes)

    def save(self, path: Path) -> None:
        from echofm.files import atomic_write

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def _resolve_model(spec: Any, overrides: dict, source: str) -> tuple[ModelConfig, str]:
    """``model:`` as a preset name or a mapping (optionally with ``preset:``) -> ModelConfig."""
    try:
        if isinstance(spec, str):
            return preset(spec).replace(**overrides), _canonical(spec)
        if isinstance(spec, dict):
            spec = dict(spec)
            name = spec.pop("preset", None)
            if name is not None:
                return preset(name).replace(**spec, **overrides), _canonical(name)
            return ModelConfig.from_dict({**spec, **overrides}), "custom"
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: model: {exc}") from exc
    raise ConfigError(f"{source}: model must be a preset name ({', '.join(PRESETS)}) or a mapping")


def _canonical(name: str) -> str:
    return name if name.startswith("echofm-") else f"echofm-{name}"


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalar/list syntax (``1e-3``, ``true``, ``[a, b]``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_pretrain_config(source: str, overrides: Optional[dict[str, Any]] = None) -> PretrainConfig:
    """A preset name or a YAML file, then ``overrides`` (``model.X`` keys reach the model)."""
    path = Path(source).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        where = str(path)
    elif _canonical(source) in PRESETS:
        values, where = {"model": source}, f"preset {source}"
    else:
        raise ConfigError(f"{source}: neither a YAML file nor a preset ({', '.join(PRESETS)})")
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of settings at the top level")
    values = dict(values)
    model_overrides = dict(values.pop("model_overrides", None) or {})
    for key, value in (overrides or {}).items():
        if key.startswith("model."):
            model_overrides[key[len("model."):]] = value
        else:
            values[key.replace("-", "_")] = value
    values["model_overrides"] = model_overrides
    return PretrainConfig.from_dict(values, where)
