"""The input contract: frame steps from frame rates, the fallback, saving and loading with models."""

from __future__ import annotations

import json
import warnings

import pytest

from echofm.contract import (ASSUMED_SOURCE_FPS, InputContract, SamplingWarning, public_contract,
                             reset_warnings, untrained_contract)


def test_frame_step_brings_a_source_to_the_model_rate():
    c = InputContract(num_frames=16, image_size=112, fps=15.0, frame_step=1)
    assert c.frame_step_for(30.0) == 2
    assert c.frame_step_for(15.0) == 1
    assert c.frame_step_for(10.0) == 1  # never below one frame
    assert c.frame_step_for(60.0) == 4
    assert c.clip_seconds() == pytest.approx(16 / 15)
    unstated = InputContract(num_frames=16, image_size=112, fps=None, frame_step=3)
    assert unstated.frame_step_for(30.0) == 3 and unstated.frame_step_for(None) == 3


def test_a_source_without_fps_gets_one_warning_and_the_assumed_rate():
    reset_warnings()
    c = InputContract(num_frames=16, image_size=112, fps=7.5)
    with pytest.warns(SamplingWarning, match="states no frame rate: assuming 30 fps") as record:
        assert c.frame_step_for(None, "clip.npy") == round(ASSUMED_SOURCE_FPS / 7.5)
    assert "clip.npy" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert c.frame_step_for(0) == 4  # the second time is silent


def test_round_trip_and_validation():
    c = InputContract(num_frames=32, image_size=224, fps=12.5, frame_step=2, mask_sector=False)
    assert InputContract.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert InputContract.from_dict({**c.to_dict(), "added_later": 1}) == c
    with pytest.raises(ValueError, match="frame_step"):
        InputContract(num_frames=16, image_size=64, frame_step=0)
    with pytest.raises(ValueError, match="intensity"):
        InputContract(num_frames=16, image_size=64, intensity="imagenet")


def test_presets_public_and_saved_models_carry_their_contract(tmp_path, official_dir):
    from echofm import load_model
    from echofm.model.weights import save_model

    model = load_model("echofm-tiny")
    assert model.contract == untrained_contract(model.cfg)
    assert model.contract.fps is None and model.contract.frame_step == 1
    model.contract = model.contract.replace(fps=15.0, frame_step=2)
    save_model(model, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["contract"]["fps"] == 15.0
    again = load_model(tmp_path / "m")
    assert again.contract == model.contract
    save_model(model, tmp_path / "single.safetensors")
    assert load_model(tmp_path / "single.safetensors").contract == model.contract
    # A model saved before the contract existed: every frame, no stated rate.
    del saved["contract"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(saved))
    from safetensors.torch import load_file, save_file
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    save_file(state, str(tmp_path / "m" / "model.safetensors"),
              metadata={"format": "echofm-model/1", "config": json.dumps(model.cfg.to_dict())})
    assert load_model(tmp_path / "m").contract == untrained_contract(model.cfg)
    for name in ("tiny_official_release_ckpt.pth", "tiny_official_training_ckpt.pth"):
        public = load_model(official_dir / name)
        assert public.contract == public_contract(public.cfg)
        assert public.contract.fps is None and public.contract.frame_step == 1 and not public.contract.mask_sector


def test_task_models_save_their_contract_and_old_ones_get_their_period(tmp_path):
    from types import SimpleNamespace

    from echofm.config import preset
    from echofm.model.echofm import VideoEncoder
    from echofm.tasks.adapter import TaskModel, TaskSpec, load_task_model, save_task_model
    from echofm.tasks.finetuning import trained_contract

    cfg = preset("tiny").replace(img_size=32, depth=1)
    contract = InputContract(num_frames=cfg.num_frames, image_size=32, fps=12.5, frame_step=2)
    model = TaskModel(VideoEncoder(cfg), TaskSpec(task="ef", kind="regression"), "linear", contract=contract)
    save_task_model(model, tmp_path / "run", {"period": 3})
    assert load_task_model(tmp_path / "run").contract == contract
    info = json.loads((tmp_path / "run" / "task.json").read_text())
    del info["contract"]  # a task model saved before the contract: its run's period, no rate
    (tmp_path / "run" / "task.json").write_text(json.dumps(info))
    old = load_task_model(tmp_path / "run").contract
    assert (old.fps, old.frame_step) == (None, 3)
    # What fine-tuning records: the init's contract, or the data's rate over an overriding step.
    videos = [SimpleNamespace(meta={"fps": 30.0}), SimpleNamespace(meta={})]
    assert trained_contract(contract, None, videos) == contract
    assert trained_contract(contract, 3, videos) == contract.replace(fps=10.0, frame_step=3)
    untrained = untrained_contract(cfg)
    assert trained_contract(untrained, None, videos).fps == 30.0  # an init without a rate: the data's, every frame
    assert trained_contract(untrained, None, [SimpleNamespace(meta={})]).fps is None


def test_sector_masking_follows_the_contract_and_the_flag_overrides_it(ybr_cine, tmp_path):
    """embed masks the sector for an echofm-trained model and keeps the whole image for a
    model whose contract says so (public checkpoints); --mask-sector / --no-mask-sector win."""
    import numpy as np

    from echofm.batch import BatchOptions
    from echofm.contract import sector_masking
    from echofm.embed import EmbedConfig, embed_studies
    from echofm.model import load_model

    assert sector_masking(None) is True and sector_masking(public_contract(_Cfg()), None) is False
    assert sector_masking(public_contract(_Cfg()), True) is True

    model = load_model("echofm-tiny", config_overrides={"img_size": 32, "depth": 1}).eval()

    def embedding(contract_masks: bool, flag, name: str):
        model.contract = model.contract.replace(mask_sector=contract_masks)
        out = tmp_path / name
        summary = embed_studies([ybr_cine], model, out, EmbedConfig(precision="fp32", mask_sector=flag),
                                BatchOptions(progress=False))
        assert summary.failed == 0
        return np.load(next(out.glob("*_video.npy")))

    masked, whole = embedding(True, None, "echofm"), embedding(False, None, "public")
    assert not np.allclose(masked, whole)  # the sector blanking and crop change what the model sees
    np.testing.assert_array_equal(embedding(False, True, "forced_on"), masked)
    np.testing.assert_array_equal(embedding(True, False, "forced_off"), whole)


class _Cfg:
    num_frames, img_size = 16, 112
