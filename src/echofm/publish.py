"""A model folder ready to upload to the Hugging Face Hub: weights, config, model card.

``export_hub_folder(source, out)`` writes ``model.safetensors`` and ``config.json`` (as
``save_model`` writes them: model config and, when the model has one, its input
contract) and a ``README.md`` model card whose YAML front matter the Hub reads
(``library_name: echofm``, tags, licence). The card states only what was recorded: the
training data and the final metrics of an echofm pretraining run directory, or "none
recorded" for anything else. Nothing here talks to the Hub; upload the folder with
``hf upload ORG/NAME DIR``.

``write_reference(run, out)`` writes the files of a reference model shipped inside the
package (``model/reference.py``): float16 weights plus the run's config and log; it is the
last step of ``echofm/data/reference/recipe.sh`` (``python -m echofm.publish reference RUN OUT``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from echofm import __version__
from echofm.errors import EchoFMError
from echofm.files import atomic_write
from echofm.model.hub import is_hub_name
from echofm.model.weights import CONFIG_NAME, WEIGHTS_NAME, load_model, save_model
from echofm.train.config import CONFIG_NAME as RUN_CONFIG_NAME
from echofm.train.logging import METRICS_NAME
from echofm.train.pretrain import MODEL_DIR

CARD_NAME = "README.md"
TAGS = ["echofm", "echocardiography", "ultrasound", "video", "medical-imaging", "foundation-model"]
# Run-log fields that describe the schedule or the machine, not the model.
_NOT_METRICS = {"step", "epoch", "elapsed_s", "eta_s", "lr", "clips_per_s"}


@dataclass
class HubFolder:
    """What ``export_hub_folder`` wrote and what the card could say."""

    out: Path
    files: list[str]
    source: str
    layout: str
    run_dir: Optional[Path]
    training_data: Optional[dict]
    metrics: Optional[dict]

    def to_dict(self) -> dict:
        return {"written": str(self.out), "files": self.files, "source": self.source,
                "source_layout": self.layout, "run_dir": str(self.run_dir) if self.run_dir else None,
                "training_data": self.training_data, "metrics": self.metrics}


def export_hub_folder(source: str | os.PathLike, out: str | os.PathLike, *,
                      encoder_only: bool = False) -> HubFolder:
    """Write ``out/`` (model.safetensors, config.json, README.md) from any model source.

    source: anything ``load_model`` reads, or an echofm pretraining run directory (its
    ``model/`` is exported and its config and metrics fill the card).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EchoFMError(f"{out}: exists and is not a directory")
    model_source, run_dir = locate_run(source)
    model = load_model(model_source, encoder_only=encoder_only)
    report = model.load_report
    metadata = dict(getattr(model, "checkpoint_metadata", None) or {})
    metadata.setdefault("converted_from", str(source))
    metadata.setdefault("layout", report.layout)
    if report.hub:
        metadata.setdefault("hub_origin", {k: report.hub[k] for k in ("repo_id", "revision", "commit", "filename")})
    save_model(model, out, metadata=metadata)
    data = training_data(run_dir, metadata)
    metrics = run_metrics(run_dir)
    card = model_card(model, str(source), report.layout, data, metrics, report.hub)
    atomic_write(out / CARD_NAME, lambda tmp: Path(tmp).write_text(card))
    return HubFolder(out=out, files=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME], source=str(source),
                     layout=report.layout, run_dir=run_dir, training_data=data, metrics=metrics)


def locate_run(source: str | os.PathLike) -> tuple[str | Path, Optional[Path]]:
    """(what to load, the pretraining run directory it came from or None).

    A run directory loads its ``model/``; a saved model inside a run directory (``RUN/model``
    or ``RUN/model/model.safetensors``) keeps its own path and names ``RUN``.
    """
    if is_hub_name(str(source)) or not Path(source).exists():
        return source, None
    path = Path(source)
    if path.is_dir() and not (path / WEIGHTS_NAME).exists() and (path / MODEL_DIR / WEIGHTS_NAME).exists():
        return path / MODEL_DIR, path
    model_dir = path if path.is_dir() else path.parent
    run = model_dir.parent
    if (run / METRICS_NAME).exists() or (run / RUN_CONFIG_NAME).exists():
        return path, run
    return path, None


def training_data(run_dir: Optional[Path], metadata: dict) -> Optional[dict]:
    """What the model was trained on, as recorded: the run's config, else the model's metadata."""
    recorded: dict[str, Any] = {}
    if run_dir is not None and (run_dir / RUN_CONFIG_NAME).exists():
        try:
            cfg = yaml.safe_load((run_dir / RUN_CONFIG_NAME).read_text()) or {}
        except yaml.YAMLError as exc:
            raise EchoFMError(f"{run_dir / RUN_CONFIG_NAME}: not readable YAML ({exc})") from None
        for key in ("data", "model_name", "init", "steps", "epochs", "batch_size", "accum_steps",
                    "frame_stride", "frame_step", "seed"):
            if cfg.get(key) not in (None, "", []):
                recorded[key] = cfg[key]
    for key, name in (("data", "data"), ("pretrain_steps", "steps"), ("model_name", "model_name")):
        if metadata.get(key) not in (None, "", []):
            recorded.setdefault(name, metadata[key])
    if "data" in recorded:
        recorded["data"] = [_data_name(d) for d in _as_list(recorded["data"])]
    return recorded or None


def run_metrics(run_dir: Optional[Path]) -> Optional[dict]:
    """The last values the run logged (``metrics.jsonl``), with the step they were logged at."""
    if run_dir is None or not (run_dir / METRICS_NAME).exists():
        return None
    last: Optional[dict] = None
    for line in (run_dir / METRICS_NAME).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(record, dict):
            last = record
    if not last:
        return None
    values = {k: v for k, v in last.items()
              if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"step": last.get("step"), "values": values} if values else None


def model_card(model, source: str, layout: str, data: Optional[dict], metrics: Optional[dict],
               hub: Optional[dict] = None) -> str:
    """The README.md text: YAML front matter for the Hub, then what is known, plainly."""
    c = model.cfg
    front = {"library_name": "echofm", "tags": TAGS, "license": "other",
             "license_name": "see-the-source", "pipeline_tag": "feature-extraction"}
    params = sum(p.numel() for p in model.parameters())
    encoder = sum(p.numel() for p in model.encoder.parameters())
    origin = source
    if hub:
        origin = f"{source} (repository {hub['repo_id']}, commit {hub['commit']}, file {hub['filename']})"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             "# EchoFM video encoder", "",
             "An echocardiography video foundation model in the EchoFM architecture (Kim et al., "
             f"IEEE TMI 2025), written by echofm {__version__}.", "",
             "## Use", "", "```python", "import echofm",
             'model = echofm.load_model("hf:ORG/NAME")  # the repository this folder is uploaded to',
             "```", "",
             "or `echofm info hf:ORG/NAME`. Offline: set `HF_HUB_OFFLINE=1` once the file is in the "
             "Hub cache, or pass the downloaded folder's path.", "",
             "## Model", "",
             "| setting | value |", "|---|---|",
             f"| image size | {c.img_size} |", f"| frames per clip | {c.num_frames} |",
             f"| patch / tubelet | {c.patch_size} / {c.t_patch_size} |",
             f"| width / depth / heads | {c.embed_dim} / {c.depth} / {c.num_heads} |",
             f"| parameters (encoder) | {params:,} ({encoder:,}) |", ""]
    contract = getattr(model, "contract", None)
    lines += ["## Input contract", ""]
    if contract is not None:
        as_dict = contract.to_dict() if hasattr(contract, "to_dict") else contract
        lines += ["How clips must be made for this model (also in `config.json`):", "", "```json",
                  json.dumps(as_dict, indent=2, sort_keys=True, default=str), "```", ""]
    else:
        lines += ["None recorded: consumers fall back to their documented defaults.", ""]
    lines += ["## Training data", ""]
    if data:
        lines += [f"- {k.replace('_', ' ')}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                  for k, v in data.items()]
        lines.append("")
    else:
        lines += ["None recorded with these weights: see the source.", ""]
    lines += ["## Metrics", ""]
    if metrics:
        lines += [f"Last values logged by the run (step {metrics['step']}):", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in metrics["values"].items()]
        lines.append("")
    else:
        lines += ["None recorded.", ""]
    lines += ["## Licence", "",
              "The licence of these weights was not recorded with them: see the source.", "",
              "## Source", "", f"- converted from: `{origin}`", f"- layout read: {layout}", ""]
    return "\n".join(lines)


def _as_list(value) -> list:
    return value if isinstance(value, (list, tuple)) else [value]


def _data_name(entry) -> str:
    """A data source as the card shows it: a local folder by its name, not its full path."""
    text = str(entry)
    if ":" in text.split("/")[0] or "/" not in text:
        return text  # synth:256, hf:..., or a bare name
    return Path(text.rstrip("/")).name


# --- reference models shipped in the package ----------------------------------------------

def write_reference(run: str | os.PathLike, out: str | os.PathLike, name: str = "echofm-tiny-phantom") -> Path:
    """Turn a finished pretraining run into a shipped reference model's files: ``RUN/model``
    saved as float16 ``OUT/NAME.safetensors`` (config and input contract in its metadata,
    half the size of float32), with the run's config.yaml and metrics.jsonl copied beside it.
    Returns the weights file."""
    import shutil

    import torch

    from echofm.model.reference import REFERENCE_MODELS, RUN_FILES
    from echofm.model.weights import load_model, save_model

    run, out = Path(run), Path(out)
    model = load_model(run / "model")
    out.mkdir(parents=True, exist_ok=True)
    target = save_model(model, out / REFERENCE_MODELS.get(name, f"{name}.safetensors"),
                        metadata={"name": name, "recipe": "recipe.sh"}, dtype=torch.float16)
    for file in RUN_FILES:
        shutil.copyfile(run / file, out / file)
    return target


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m echofm.publish reference RUN OUT`` (the reference recipe's last step)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] != "reference":
        print("usage: python -m echofm.publish reference RUN OUT", file=sys.stderr)
        return 2
    print(write_reference(args[1], args[2]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
