"""Model files: our own format (safetensors + JSON config) and the public EchoFM layout.

Every conversion between the public layout and ours lives here, in one rename table
(``PUBLIC_TO_OURS``) plus the q/k/v <-> fused qkv step. Loading never executes pickled
code: ``torch.load(weights_only=True)`` with only ``argparse.Namespace`` allowed (the
public trainer stores its arguments as one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from echofm.config import ModelConfig, PRESETS, preset
from echofm.errors import EchoFMError
from echofm.files import atomic_write
from echofm.model.hub import is_hub_name, resolve as resolve_hub_name
from echofm.model.reference import REFERENCE_MODELS, reference_path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "echofm-model/1"

# Public-layout prefix -> our prefix, longest match first. Exact names end without a dot.
PUBLIC_TO_OURS: list[tuple[str, str]] = [
    ("decoder_prj_cls_token", "projector.cls_token"),
    ("decoder_block.", "projector.block."),
    ("prj_norm.", "projector.norm."),
    ("decoder_pos_embed_spatial", "decoder.pos_embed.spatial_embed"),
    ("decoder_pos_embed_temporal", "decoder.pos_embed.temporal_embed"),
    ("decoder_pos_embed_class", "decoder.pos_embed.class_embed"),
    ("decoder_pos_embed", "decoder.pos_embed.joint_embed"),
    ("decoder_cls_token", "decoder.cls_token"),
    ("decoder_embed.", "decoder.embed."),
    ("decoder_blocks.", "decoder.blocks."),
    ("decoder_norm.", "decoder.norm."),
    ("decoder_pred.", "decoder.pred."),
    ("mask_token", "decoder.mask_token"),
    ("pos_embed_spatial", "encoder.pos_embed.spatial_embed"),
    ("pos_embed_temporal", "encoder.pos_embed.temporal_embed"),
    ("pos_embed_class", "encoder.pos_embed.class_embed"),
    ("pos_embed", "encoder.pos_embed.joint_embed"),
    ("cls_token", "encoder.cls_token"),
    ("patch_embed.", "encoder.patch_embed."),
    ("blocks.", "encoder.blocks."),
    ("norm.", "encoder.norm."),
]

# The public code's state_dict order (parameters as its __init__ registers them).
_PUBLIC_ORDER = [
    "cls_token", "decoder_cls_token", "decoder_prj_cls_token", "pos_embed_spatial",
    "pos_embed_temporal", "pos_embed_class", "pos_embed", "mask_token",
    "decoder_pos_embed_spatial", "decoder_pos_embed_temporal", "decoder_pos_embed_class",
    "decoder_pos_embed", "patch_embed.", "blocks.", "decoder_block.", "norm.", "decoder_embed.",
    "decoder_blocks.", "decoder_norm.", "decoder_pred.", "prj_norm.",
]
_BLOCK_ORDER = ["norm1.weight", "norm1.bias"] + [f"attn.{p}.{w}" for p in ("q", "k", "v", "proj")
                                                  for w in ("weight", "bias")] + [
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]


def _rename(name: str, table: list[tuple[str, str]]) -> Optional[str]:
    for src, dst in table:
        if src.endswith("."):
            if name.startswith(src):
                return dst + name[len(src):]
        elif name == src:
            return dst
    return None


def from_public_state_dict(public: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Public EchoFM state dict -> ours. Returns (state, names of keys that do not map)."""
    ours: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    qkv_parts: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in public.items():
        m = re.match(r"^(.*\.attn)\.([qkv])\.(weight|bias)$", name)
        if m:
            qkv_parts.setdefault(f"{m.group(1)}.qkv.{m.group(3)}", {})[m.group(2)] = value
            continue
        new = _rename(name, PUBLIC_TO_OURS)
        if new is None:
            unmapped.append(name)
        else:
            ours[new] = value
    for fused_public, parts in qkv_parts.items():
        if set(parts) != {"q", "k", "v"}:
            unmapped.extend(f"{fused_public.replace('.qkv.', f'.{p}.')}" for p in parts)
            continue
        new = _rename(fused_public, PUBLIC_TO_OURS)
        if new is None:
            unmapped.extend(fused_public.replace(".qkv.", f".{p}.") for p in "qkv")
            continue
        ours[new] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return ours, unmapped


def to_public_state_dict(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> the public EchoFM layout (q/k/v split, public names and order)."""
    reverse = [(dst, src) for src, dst in PUBLIC_TO_OURS]
    reverse.sort(key=lambda pair: -len(pair[0]))
    out: dict[str, torch.Tensor] = {}
    for name, value in ours.items():
        public = _rename(name, reverse)
        if public is None:
            raise EchoFMError(f"no public-layout name for parameter {name!r}")
        if ".attn.qkv." in public:
            for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                out[public.replace(".qkv.", f".{part}.")] = chunk.clone()
        else:
            out[public] = value

    def rank(key: str) -> tuple[int, int, int]:
        for i, prefix in enumerate(_PUBLIC_ORDER):
            if (prefix.endswith(".") and key.startswith(prefix)) or key == prefix:
                m = re.match(r"^[a-z_]+\.(\d+)\.(.*)$", key) or re.match(r"^decoder_block\.()(.*)$", key)
                within = _BLOCK_ORDER.index(m.group(2)) if m and m.group(2) in _BLOCK_ORDER else 0
                return (i, int(m.group(1)) if m and m.group(1) else 0, within)
        return (len(_PUBLIC_ORDER), 0, 0)

    keys = sorted(out, key=rank)
    return {k: out[k] for k in keys}


def infer_public_config(public: dict[str, torch.Tensor], args: dict[str, Any]) -> ModelConfig:
    """Configuration of a public checkpoint from its tensor shapes, completed by its args."""
    def shape(key: str):
        if key not in public:
            raise EchoFMError(f"public checkpoint lacks {key!r}; cannot infer its configuration")
        return tuple(public[key].shape)

    embed_dim, in_chans, t_patch, patch, _ = shape("patch_embed.proj.weight")
    depth = 1 + max(int(k.split(".")[1]) for k in public if k.startswith("blocks."))
    # Encoder-only files carry no decoder: take its sizes from the args or the defaults.
    has_decoder = "decoder_embed.weight" in public
    dec_dim = shape("decoder_embed.weight")[0] if has_decoder else int(args.get("decoder_embed_dim", 512))
    dec_depth = (1 + max((int(k.split(".")[1]) for k in public if k.startswith("decoder_blocks.")), default=-1)
                 if has_decoder else int(args.get("decoder_depth", 8)))
    mlp_ratio = shape("blocks.0.mlp.fc1.weight")[0] / embed_dim
    sep = "pos_embed_spatial" in public
    cls = "cls_token" in public
    if sep:
        spatial = shape("pos_embed_spatial")[1]
        t_grid = shape("pos_embed_temporal")[1]
    else:
        total = shape("pos_embed")[1] - int(cls)
        spatial = None
        t_grid = None
    if spatial is None:
        # A joint table is [T*L (+1), D]: the split into time steps and spatial positions
        # needs the image size or the frame count from the args (shapes cannot tell).
        img = int(args.get("img_size") or args.get("input_size") or 0)
        num_frames = int(args.get("num_frames") or 0)
        if img and img % patch == 0 and total % ((img // patch) ** 2) == 0:
            spatial = (img // patch) ** 2
            t_grid = total // spatial
        elif num_frames and num_frames % t_patch == 0 and total % (num_frames // t_patch) == 0:
            t_grid = num_frames // t_patch
            spatial = total // t_grid
        else:
            raise EchoFMError(
                f"joint positional embeddings of {total} tokens: the checkpoint args need img_size or "
                f"num_frames consistent with them (got img_size={img or None}, num_frames={num_frames or None})")
    grid = int(round(spatial ** 0.5))
    num_frames = t_grid * t_patch
    if "decoder_pred.weight" in public:
        u = shape("decoder_pred.weight")[0] // (patch * patch * in_chans)
    else:
        u = max(1, int(args.get("pred_t_dim", t_grid)) * t_patch // num_frames)
    values: dict[str, Any] = dict(
        img_size=grid * patch, patch_size=patch, in_chans=in_chans, num_frames=num_frames,
        t_patch_size=t_patch, embed_dim=embed_dim, depth=depth, mlp_ratio=mlp_ratio,
        qkv_bias="blocks.0.attn.q.bias" in public, sep_pos_embed=sep, cls_embed=cls,
        decoder_embed_dim=dec_dim, decoder_depth=dec_depth, pred_t_dim=u * num_frames // t_patch,
        num_heads=int(args.get("num_heads") or max(1, embed_dim // 64)),
        decoder_num_heads=int(args.get("decoder_num_heads") or (16 if dec_dim % 16 == 0 else max(1, dec_dim // 64))),
        norm_pix_loss=bool(args.get("norm_pix_loss", True)),
    )
    if "norm_layer_eps" in args or "norm_eps" in args:
        values["norm_eps"] = float(args.get("norm_layer_eps", args.get("norm_eps")))
    for key in ("mask_ratio", "triplet_weight", "triplet_margin", "phase_prior", "cycle_weight",
                "cycle_tau", "prior_center_alpha"):
        if args.get(key) is not None:
            values[key] = args[key]
    return ModelConfig(**values)


# --- reading files ---------------------------------------------------------------------

def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, foreign globals
        raise EchoFMError(
            f"{path}: cannot read as a checkpoint without executing code ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


@dataclass
class LoadReport:
    """What loading found: which keys were missing from / unexpected in the file."""

    source: str
    layout: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    # For a hub name: repository, revision, commit, file and cached path (HubFile.to_dict()).
    hub: Optional[dict] = None


def _read_own(path: Path) -> tuple[dict[str, torch.Tensor], ModelConfig, dict, Optional[dict]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if not weights.exists():
        raise EchoFMError(f"{path}: no {WEIGHTS_NAME} found")
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(weights))
    except Exception as exc:
        raise EchoFMError(f"{weights}: not a readable safetensors file ({exc})") from exc
    contract = json.loads(meta["contract"]) if "contract" in meta else None
    if "config" in meta:
        cfg_dict = json.loads(meta["config"])
    else:
        cfg_path = weights.with_name(CONFIG_NAME)
        if not cfg_path.exists():
            raise EchoFMError(f"{weights}: no model config in its metadata nor {cfg_path.name} beside it")
        saved = json.loads(cfg_path.read_text())
        cfg_dict = saved.get("model", saved)
        contract = contract or saved.get("contract")
    extra = json.loads(meta.get("metadata", "{}"))
    return state, ModelConfig.from_dict(cfg_dict, strict=False), extra, contract


def read_checkpoint(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig, str, dict]:
    """Read weights and config from any supported file: (our_state, config, layout, extra);
    ``extra["contract"]`` holds the saved input contract (``echofm.contract``) of our own
    files that have one."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or directory "
                                f"(presets: {', '.join(PRESETS)}; shipped: {', '.join(sorted(REFERENCE_MODELS))}; "
                                f"hub models: hf:ORG/NAME)")
    if path.is_dir() or path.suffix == ".safetensors":
        state, cfg, extra, contract = _read_own(path)
        return state, cfg, "echofm", {**extra, "contract": contract}
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt["model"], dict):
        raise EchoFMError(f"{path}: not an EchoFM checkpoint (expected a dict with a 'model' state dict)")
    if "model_args" in ckpt:
        layout, args = "public-release", dict(ckpt["model_args"] or {})
    elif "args" in ckpt:
        layout = "public-trainer"
        args = vars(ckpt["args"]) if isinstance(ckpt["args"], argparse.Namespace) else dict(ckpt["args"] or {})
    else:
        layout, args = "public-state-dict", {}
    public = {k.removeprefix("module."): v for k, v in ckpt["model"].items()}
    if any(k.startswith(("encoder.", "projector.", "decoder.")) for k in public):
        raise EchoFMError(f"{path}: holds echofm-layout weights; save them with echofm.save_model() instead")
    state, unmapped = from_public_state_dict(public)
    if unmapped:
        raise EchoFMError(f"{path}: unexpected keys in the public checkpoint: {', '.join(sorted(unmapped))}")
    cfg = infer_public_config(public, args)
    return state, cfg, layout, {"public_args": {k: v for k, v in args.items()
                                               if isinstance(v, (int, float, str, bool, type(None)))}}


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, layout: str,
               strict: bool = True, encoder_only: bool = False) -> LoadReport:
    """Copy ``state`` into ``model``, reporting missing and unexpected keys by name."""
    own = model.state_dict()
    report = LoadReport(source=source, layout=layout)
    if "projector.norm.weight" not in state and "encoder.norm.weight" in state and "projector.block.norm1.weight" in state:
        # Older public code normalised projector outputs with the encoder's final norm.
        state = dict(state, **{"projector.norm.weight": state["encoder.norm.weight"],
                               "projector.norm.bias": state["encoder.norm.bias"]})
    needed = [k for k in own if (k.startswith("encoder.") or not encoder_only)]
    report.missing = [k for k in needed if k not in state]
    report.unexpected = [k for k in state if k not in own]
    if encoder_only:
        report.unexpected = [k for k in report.unexpected if k.startswith("encoder.")]
    bad_shape = [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
                 for k in state if k in own and state[k].shape != own[k].shape]
    if bad_shape:
        raise EchoFMError(f"{source}: shape mismatch: {'; '.join(bad_shape)}")
    if strict and (report.missing or report.unexpected):
        parts = []
        if report.missing:
            parts.append(f"missing keys: {', '.join(report.missing)}")
        if report.unexpected:
            parts.append(f"unexpected keys: {', '.join(report.unexpected)}")
        raise EchoFMError(f"{source}: {'; '.join(parts)}")
    with torch.no_grad():
        for k, v in state.items():
            if k in own and (not encoder_only or k.startswith("encoder.")):
                own[k].copy_(v)
    if report.missing or report.unexpected:
        warnings.warn(f"{source}: loaded with missing {report.missing} and unexpected {report.unexpected}")
    return report


def load_model(source: str | os.PathLike, *, strict: bool = True, encoder_only: bool = False,
               config_overrides: Optional[dict] = None):
    """Build an EchoFM model from a preset name, our saved model, or a public checkpoint.

    source: ``"echofm-tiny"`` (random init), a reference model shipped with the package
    (``"echofm-tiny-phantom"``, ``model/reference.py``), a directory or ``.safetensors`` written by
    ``save_model``, a public EchoFM ``.pth`` in its trainer or release layout, or any of
    these on the Hugging Face Hub as ``"hf:ORG/NAME[@REVISION][/FILE]"`` (see model/hub.py).
    encoder_only: require only the encoder's weights (projector/decoder keep their init).
    The returned model has ``load_report`` (missing/unexpected keys) attached, and its
    ``contract`` (``echofm.contract.InputContract``): as saved; the public code's convention
    for public checkpoints; every frame, no stated rate, for presets and for echofm models
    saved before the contract existed.
    """
    from echofm.contract import contract_for, public_contract
    from echofm.model.echofm import EchoFM

    name = str(source)
    if not Path(name).exists() and name in REFERENCE_MODELS:
        source = reference_path(name)
    if not Path(name).exists() and (name in PRESETS or f"echofm-{name}" in PRESETS):
        cfg = preset(name)
        if config_overrides:
            cfg = cfg.replace(**config_overrides)
        model = EchoFM(cfg)
        model.load_report = LoadReport(source=name, layout="preset")
        return model
    hub_file = resolve_hub_name(name) if is_hub_name(name) else None
    state, cfg, layout, extra = read_checkpoint(hub_file.path if hub_file else source)
    if config_overrides:
        cfg = cfg.replace(**config_overrides)
    model = EchoFM(cfg)
    model.load_report = load_state(model, state, name, layout, strict=strict, encoder_only=encoder_only)
    contract = extra.pop("contract", None)
    model.contract = public_contract(cfg) if layout.startswith("public") else contract_for(cfg, contract)
    model.load_report.hub = hub_file.to_dict() if hub_file else None
    model.checkpoint_metadata = extra
    return model


def load_encoder(source: str | os.PathLike):
    """Just the video encoder (``VideoEncoder``) of any model source."""
    return load_model(source, encoder_only=True, strict=True).encoder


# --- writing files ---------------------------------------------------------------------

def save_model(model, path: str | os.PathLike, metadata: Optional[dict] = None,
               dtype: Optional[torch.dtype] = None) -> Path:
    """Save ``model`` as ``path/model.safetensors`` (config in its metadata) + ``path/config.json``.

    A path ending in ``.safetensors`` writes that single file (config in its metadata). The
    model's input contract (``model.contract``) is saved in both. dtype: store floating-point
    tensors in this type (e.g. ``torch.float16`` for a file half the size; loading casts
    them back to the model's type).
    """
    from safetensors.torch import save_file

    from echofm.contract import untrained_contract

    path = Path(path)
    cfg_json = json.dumps(model.cfg.to_dict(), sort_keys=True)
    contract = (getattr(model, "contract", None) or untrained_contract(model.cfg)).to_dict()
    meta = {"format": FORMAT_TAG, "config": cfg_json, "metadata": json.dumps(metadata or {}),
            "contract": json.dumps(contract, sort_keys=True)}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    target = path if path.suffix == ".safetensors" else path / WEIGHTS_NAME
    atomic_write(target, lambda tmp: save_file(state, tmp, metadata=meta))
    if path.suffix != ".safetensors":
        text = json.dumps({"format": FORMAT_TAG, "model": model.cfg.to_dict(), "contract": contract,
                           "metadata": metadata or {}}, indent=2, sort_keys=True)
        atomic_write(path / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return target


def export_public(model, path: str | os.PathLike) -> Path:
    """Write a ``.pth`` in the public release layout ``{model, model_args}`` (plain types only)."""
    c = model.cfg
    model_args = {k: getattr(c, k) for k in (
        "num_frames", "t_patch_size", "pred_t_dim", "sep_pos_embed", "cls_embed", "norm_pix_loss",
        "img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "decoder_embed_dim",
        "decoder_depth", "decoder_num_heads", "mlp_ratio")}
    model_args["norm_layer_eps"] = c.norm_eps
    payload = {"model": to_public_state_dict(model.state_dict()), "model_args": model_args}
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path
