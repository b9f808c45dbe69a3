"""The reference model shipped in the package (``echofm-tiny-phantom``), and the 198-bpm case
of issue 12 read right with it.

- It loads by name with no download, and says how its input is made (10 fps, sector masked).
- Its recipe, run as written but stopped after 3 steps, logs the losses of the shipped
  metrics.jsonl's first 3 lines (fp32 pinned, so this holds on any x86 CPU within 1e-3).
- `echofm phase` with it and no flags reads the real 120-frame A4C cine of pydicom-data
  every 3rd frame (30 fps -> the model's 10 fps) and finds the heart rate its pixels show,
  within 5 bpm; the 30-frame cut of a cine (one model window) reports no cycle, and says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import echofm
from echofm.model.reference import REFERENCE_MODELS, reference_dir, reference_path

NAME = "echofm-tiny-phantom"
LOSSES = ("loss", "recon", "triplet", "cycle")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reference_model():
    from echofm.model import load_model

    return load_model(NAME).eval()


def test_the_reference_model_ships_in_the_package_and_states_its_contract(reference_model):
    assert NAME in REFERENCE_MODELS
    weights = reference_path(NAME)
    assert weights.is_file() and weights.stat().st_size <= 10 * 2**20
    for name in ("recipe.sh", "config.yaml", "metrics.jsonl"):
        assert (reference_dir() / name).is_file(), name
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}
    model = reference_model
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    assert (model.cfg.img_size, model.cfg.num_frames, model.cfg.embed_dim) == (48, 16, 192)
    c = model.contract
    assert (c.fps, c.frame_step, c.mask_sector, c.num_frames, c.image_size) == (10.0, 3, True, 16, 48)
    assert c.frame_step_for(30.0) == 3


def test_its_log_is_the_whole_run_and_the_losses_fell():
    rows = [r for r in _rows(reference_dir() / "metrics.jsonl") if "loss" in r]
    import yaml

    config = yaml.safe_load((reference_dir() / "config.yaml").read_text())
    assert len(rows) == config["steps"] and rows[-1]["step"] == config["steps"]
    assert config["precision"] == "fp32" and config["seed"] == 0 and config["frame_step"] == 3
    tenth = max(1, len(rows) // 10)  # single steps are noisy: compare the first and last tenths

    def mean(part, key):
        return sum(r[key] for r in part) / len(part)

    assert mean(rows[-tenth:], "loss") < 0.95 * mean(rows[:tenth], "loss")
    assert mean(rows[-tenth:], "recon") < 0.8 * mean(rows[:tenth], "recon")


def test_the_recipe_as_written_reproduces_the_first_logged_losses(tmp_path):
    """recipe.sh's own pretraining command, stopped after 3 steps."""
    env = dict(os.environ, PYTHON=sys.executable, ECHOFM_STOP_AFTER="3", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(echofm.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(["bash", str(reference_dir() / "recipe.sh"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / NAME).exists()  # stopped early: no model files written
    got = [r for r in _rows(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    shipped = [r for r in _rows(reference_dir() / "metrics.jsonl") if "loss" in r][:3]
    assert [r["step"] for r in got] == [1, 2, 3]
    for mine, theirs in zip(got, shipped):
        for key in LOSSES:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-3), (mine["step"], key)


def test_phase_reads_the_real_cine_at_the_pixel_heart_rate_with_no_flags(reference_model, color3d_cine, tmp_path):
    from echofm.analysis.study_phase import study_phase

    payload = study_phase(color3d_cine, tmp_path / "phase", reference_model)
    pixels, emb = payload["pixels"], payload["embeddings"]
    assert payload["frames"] == 120 and payload["fps"] == pytest.approx(30.0, rel=0.01)
    assert emb["frame_step"] == 3  # 30 fps read at the model's 10 fps: every 3rd frame
    assert pixels["heart_rate_bpm"] == pytest.approx(66.6, abs=2.0)
    assert emb["heart_rate_bpm"] is not None
    assert abs(emb["heart_rate_bpm"] - pixels["heart_rate_bpm"]) <= 5.0, (emb["heart_rate_bpm"], pixels["heart_rate_bpm"])
    assert "note" not in payload
    assert json.loads((tmp_path / "phase" / "phase.json").read_text())["embeddings"] == emb


def test_a_cine_of_one_model_window_reports_no_made_up_cycle(reference_model, ybr_cine, tmp_path):
    from echofm.analysis.study_phase import study_phase

    payload = study_phase(ybr_cine, tmp_path / "short", reference_model)
    assert payload["frames"] == 30 and payload["embeddings"]["frame_step"] == 3
    assert payload["pixels"]["cycle_frames"] is None and payload["pixels"]["heart_rate_bpm"] is None
    assert payload["embeddings"]["cycle_frames"] is None and payload["embeddings"]["heart_rate_bpm"] is None
    assert "fits in one model window" in payload["note"] and "30 frames" in payload["note"]
