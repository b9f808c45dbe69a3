"""Reference models shipped inside the package: a name -> its files, loaded with no download.

``echofm-tiny-phantom`` is echofm-tiny (48 px, 16 frames) pretrained by echofm itself for
6000 steps on 2048 phantom clips at 10 fps (``echofm pretrain --data synth:2048``). It is small
(float16 weights, a few MB) and reproducible, so examples, tests and the docs can run a
trained model anywhere: ``echofm.load_model("echofm-tiny-phantom")`` or ``--model
echofm-tiny-phantom``. Its files, in ``echofm/data/reference/``:

* ``echofm-tiny-phantom.safetensors``: the weights in float16, the model config and input
  contract in its metadata (10 fps, frame step 3, sector masked);
* ``recipe.sh``: the exact commands that made it (``bash recipe.sh WORKDIR``);
* ``config.yaml`` and ``metrics.jsonl``: the pretraining run's config and per-step log.

It learned phantoms, not patients: use it to try echofm, not to read clinical studies.
This module only names the files (no torch import); ``echofm.publish.write_reference``
writes them from a run (the recipe's last step).
"""

from __future__ import annotations

from pathlib import Path

REFERENCE_MODELS = {"echofm-tiny-phantom": "echofm-tiny-phantom.safetensors"}
RUN_FILES = ("config.yaml", "metrics.jsonl")  # copied from the pretraining run beside the weights


def reference_dir() -> Path:
    """The folder holding the shipped reference files (inside the installed package)."""
    return Path(__file__).resolve().parent.parent / "data" / "reference"


def reference_path(name: str) -> Path:
    """The weights file of the reference model ``name``."""
    if name not in REFERENCE_MODELS:
        raise KeyError(f"{name!r} is not a shipped reference model ({', '.join(sorted(REFERENCE_MODELS))})")
    return reference_dir() / REFERENCE_MODELS[name]
