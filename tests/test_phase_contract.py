"""The 198-bpm case of issue 12: a model pretrained on 15 fps phantoms, run by `echofm phase`
on a 30 fps cine with no sampling flags, reads it every 2nd frame because its saved input
contract says 15 fps.

The real cine (pydicom's examples_ybr_color.dcm: 30 frames at 30 fps, one beat) is too short
for the pixel analysis to report a cycle (its pixel heart rate is null, and the JSON's note
says why; tests/test_reference_model.py reads the 120-frame cine), so the test checks
what makes the heart rate right: the frame step the contract gives, that it equals the
explicit `--frame-step 2` result, and that the old behaviour (every frame) differs from it.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from echofm.cli import main


@pytest.fixture(scope="module")
def model_15fps(tmp_path_factory):
    """A tiny model pretrained (2 steps) on ``synth`` phantoms generated at 30/2 = 15 fps."""
    run = tmp_path_factory.mktemp("pre15")
    assert main(["pretrain", "--config", "echofm-tiny", "--set", "model.img_size=32", "--set", "model.depth=1",
                 "--data", "synth:8", "--frame-step", "2", "--out", str(run), "--steps", "2", "--batch-size", "4",
                 "--workers", "0", "--checkpoint-every", "0", "--no-augment", "--device", "cpu", "--quiet"]) == 0
    return run / "model"


def _phase(source, model, out, *flags) -> dict:
    assert main(["phase", str(source), "--model", str(model), "--out", str(out), "--size", "64", *flags]) == 0
    return json.loads((out / "phase.json").read_text())


def test_pretraining_records_the_phantoms_rate(model_15fps):
    from echofm.model import load_model

    contract = load_model(model_15fps).contract
    assert contract.fps == 15.0 and contract.frame_step == 2 and contract.num_frames == 16
    saved = json.loads((model_15fps / "config.json").read_text())["contract"]
    assert saved["fps"] == 15.0


def test_phase_reads_a_30fps_cine_at_the_models_rate_without_flags(model_15fps, ybr_cine, tmp_path, capsys):
    auto = _phase(ybr_cine, model_15fps, tmp_path / "auto")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-2])  # the line printed before "wrote ..."
    assert summary["frame_step"] == 2
    assert auto["fps"] == pytest.approx(30.0)
    emb = auto["embeddings"]
    assert emb["frame_step"] == 2
    explicit = _phase(ybr_cine, model_15fps, tmp_path / "two", "--frame-step", "2")["embeddings"]
    assert emb["lag_profile"] == explicit["lag_profile"] and emb["cycle_frames"] == explicit["cycle_frames"]
    # The old behaviour, every frame of the 30 fps cine: other windows (16 frames each instead of
    # 16 every 2nd frame). Either way the 30 frames fit in one window's span, too short for an
    # embedding cycle: none is made up, and the note says why.
    old_payload = _phase(ybr_cine, model_15fps, tmp_path / "one", "--frame-step", "1")
    old = old_payload["embeddings"]
    assert old["frame_step"] == 1 and old["cycle_frames"] is None and emb["cycle_frames"] is None
    assert "two model windows' span (32 frames" in old_payload["note"]
    assert "two model windows' span (64 frames" in auto["note"]
    if emb["cycle_frames"]:  # a cycle is counted in source frames: steps x tubelet x frame step
        assert emb["heart_rate_bpm"] == pytest.approx(60 * 30.0 / emb["cycle_frames"])


def test_a_source_without_a_frame_rate_warns_once_and_assumes_30_fps(model_15fps, ybr_cine, tmp_path):
    from echofm.contract import reset_warnings
    from echofm.inference import load_study

    np.save(tmp_path / "clip.npy", load_study(ybr_cine, 32).frames)  # a bare array: no rate stated
    reset_warnings()
    with pytest.warns(UserWarning, match="clip.npy states no frame rate: assuming 30 fps") as record:
        result = _phase(tmp_path / "clip.npy", model_15fps, tmp_path / "npy")
    assert sum("states no frame rate" in str(w.message) for w in record) == 1
    assert result["embeddings"]["frame_step"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per run, not per source
        _phase(tmp_path / "clip.npy", model_15fps, tmp_path / "npy2")
