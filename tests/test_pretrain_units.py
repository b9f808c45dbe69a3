"""Pretraining building blocks: configs, optimiser groups, schedule, data specs, phase contrast, CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from echofm.config import preset
from echofm.train.config import ConfigError, PretrainConfig, load_pretrain_config


# --- config ------------------------------------------------------------------------------

def test_yaml_describes_a_run_and_round_trips(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {preset: echofm-tiny, mask_ratio: 0.9}\ndata: synth:8\nbatch_size: 2\n"
                    "steps: 10\nbetas: [0.9, 0.99]\n")
    cfg = load_pretrain_config(str(path), {"model.depth": 2, "seed": 3, "out": str(tmp_path / "r")})
    assert cfg.model.mask_ratio == 0.9 and cfg.model.depth == 2 and cfg.model.embed_dim == 192
    assert cfg.data == ["synth:8"] and cfg.seed == 3 and cfg.betas == (0.9, 0.99)
    cfg.save(tmp_path / "config.yaml")
    again = load_pretrain_config(str(tmp_path / "config.yaml"))
    assert again == cfg and again.model_name == "echofm-tiny"


def test_preset_name_as_config():
    cfg = load_pretrain_config("small", {"steps": 5})
    assert cfg.model == preset("echofm-small") and cfg.model_name == "echofm-small"


@pytest.mark.parametrize("text, match", [
    ("batchsize: 4\n", "unknown setting.*batchsize"),
    ("model: echofm-huge\n", "unknown preset"),
    ("model: {preset: tiny, depht: 2}\n", "depht"),
    ("batch_size: 0\n", "batch_size 0"),
    ("- a\n- b\n", "mapping"),
])
def test_bad_config_names_file_and_reason(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises((ConfigError, ValueError), match=match):
        load_pretrain_config(str(path))


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such config file"):
        load_pretrain_config(str(tmp_path / "nope.yaml"))


# --- optimiser and schedule ------------------------------------------------------------------

def test_no_weight_decay_on_norms_biases_positions_tokens():
    from echofm.model import EchoFM
    from echofm.train.optim import build_optimizer

    model = EchoFM(preset("echofm-tiny").replace(depth=1, decoder_depth=1))
    opt = build_optimizer(model, 1e-3, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in opt.param_groups[0]["params"]}
    no_decay = {names[id(p)] for p in opt.param_groups[1]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[1]["weight_decay"] == 0.0
    assert "encoder.blocks.0.attn.qkv.weight" in decay and "decoder.pred.weight" in decay
    assert "encoder.patch_embed.proj.weight" in decay
    for name in ("encoder.cls_token", "decoder.mask_token", "encoder.pos_embed.spatial_embed",
                 "encoder.pos_embed.temporal_embed", "encoder.pos_embed.class_embed",
                 "projector.cls_token", "encoder.norm.weight", "encoder.blocks.0.attn.qkv.bias"):
        assert name in no_decay, name
    assert len(decay) + len(no_decay) == len(names)


def test_lr_scaling_and_warmup_cosine():
    from echofm.train.optim import WarmupCosine, scaled_lr

    assert scaled_lr(1e-3, 512) == pytest.approx(2e-3)
    s = WarmupCosine(peak=1.0, total_steps=110, warmup_steps=10, floor=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0) and s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1)
    assert all(s(i) >= s(i + 1) for i in range(10, 120))


def test_precision_defaults():
    import echofm.runtime.precision as runtime_precision
    from echofm.runtime.hardware import Hardware
    from echofm.train.loop import resolve_precision

    # Pretraining takes the one rule of echofm.runtime (auto: bf16 only where native).
    assert resolve_precision is runtime_precision.resolve_precision
    avx2 = Hardware(cpu_model="x", cpu_flags=("avx2",), cpu_capability="AVX2", cores=2, torch_threads=2)
    assert resolve_precision("auto", torch.device("cpu"), avx2) == "fp32"
    runtime_precision._warned.clear()  # the warning comes once per process and reason
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert resolve_precision("bf16", torch.device("cpu"), avx2) == "bf16"


def test_mask_noise_depends_only_on_seed_epoch_index():
    from echofm.train.pretrain import mask_noise

    a = mask_noise(torch.tensor([5, 9, 2]), epoch=1, seed=0, width=16)
    b = mask_noise(torch.tensor([2, 5]), epoch=1, seed=0, width=16)
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
    assert not torch.equal(a[0], mask_noise(torch.tensor([5]), epoch=2, seed=0, width=16)[0])


# --- data specs ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, match", [
    ("synth:zero", "synth:N with N a positive integer"),
    ("synth:0", "positive integer"),
    ("synth:4:clinical", "unknown phantom preset clinical"),
    ("synth:4:default:shifted", "synth:N:PRESET"),
])
def test_bad_synth_spec(spec, match):
    from echofm.train.data import DataSpecError, resolve_spec

    with pytest.raises(DataSpecError, match=match):
        resolve_spec(spec, preset("tiny"), 0)


def test_synth_spec_with_presets_takes_them_in_turn():
    from echofm.train.data import resolve_spec

    cfg = preset("tiny").replace(img_size=32, num_frames=4)
    mixed = resolve_spec("synth:4:default+shifted", cfg, 0, frame_step=4)
    plain = resolve_spec("synth:4", cfg, 0, frame_step=4)
    assert [p.depth_scale for p in mixed.phantoms] == [1.0, 1.25] and len(plain.phantoms) == 1
    # Even clips are the plain source's clips; odd ones come from the shifted preset.
    assert torch.equal(mixed[0], plain[0]) and torch.equal(mixed[2], plain[2])
    assert not torch.equal(mixed[1], plain[1])


def test_missing_and_empty_data_dirs_are_named(tmp_path):
    from echofm.train.data import DataSpecError, build_pretrain_dataset

    with pytest.raises(DataSpecError, match="nowhere: no such directory"):
        build_pretrain_dataset([str(tmp_path / "nowhere")], preset("tiny"), 0)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataSpecError, match="empty: no echo files found"):
        build_pretrain_dataset([str(tmp_path / "empty")], preset("tiny"), 0)
    with pytest.raises(DataSpecError, match="no data given"):
        build_pretrain_dataset([], preset("tiny"), 0)


def test_window_clip_layout():
    from echofm.windows import WindowSpec, window_clip, window_indices

    cfg = preset("tiny")
    frames = np.random.default_rng(0).integers(0, 256, (10, 60, 80), dtype=np.uint8)
    clip = window_clip(frames, window_indices(10, WindowSpec(cfg.num_frames, 2), 3), cfg.img_size)
    assert clip.shape == (3, 16, 112, 112) and clip.dtype == torch.float32
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0


def test_phantom_source_states_its_frame_rate_and_pretraining_records_it():
    from echofm.train.data import PhantomClips, build_pretrain_dataset, clip_fps

    cfg = preset("tiny").replace(img_size=32)
    assert PhantomClips(2, cfg, 0, frame_step=2).fps == 15.0
    assert clip_fps(build_pretrain_dataset(["synth:2", "synth:3"], cfg, 0, frame_step=4)) == 7.5
    assert clip_fps([torch.zeros(3, 16, 32, 32)]) is None  # a plain list states no rate


def test_phantom_source_keeps_each_clip_once_and_hands_out_copies():
    """Kept clips equal freshly generated ones; changing a handed-out clip changes nothing kept;
    a source too large for the budget keeps nothing."""
    from echofm.train.data import PhantomClips

    cfg = preset("tiny").replace(img_size=32)
    kept, fresh = PhantomClips(3, cfg, 5), PhantomClips(3, cfg, 5, cache_bytes=0)
    first = kept[1]
    first.fill_(7.0)  # as a trainer changing its batch in place would
    assert torch.equal(kept[1], fresh[1]) and float(kept[1].max()) <= 1.0
    assert set(kept._kept) == {1} and fresh._kept is None
    assert not torch.equal(kept[0], kept[2])


def test_bad_clip_shape_is_reported():
    from echofm.train.data import DataSpecError, check_clip

    with pytest.raises(DataSpecError, match=r"mydata: clips are \[3, 8, 112, 112\] but the model needs"):
        check_clip(torch.zeros(3, 8, 112, 112), preset("tiny"), "mydata")


# --- phase contrast ---------------------------------------------------------------------------

def _periodic_embeddings(T: int, period: float, D: int = 8) -> np.ndarray:
    t = np.arange(T)[:, None]
    k = np.arange(D)[None, :]
    return np.cos(2 * math.pi * t / period + k)


def test_phase_contrast_periodic_vs_constant_vs_drift():
    from echofm.analysis.periodicity import phase_contrast

    periodic = _periodic_embeddings(16, 4)
    assert phase_contrast(periodic, 4) > 1.0  # cos sim +1 same phase, -1 opposite
    assert phase_contrast(np.ones((16, 8)), 4) == pytest.approx(0.0, abs=1e-9)
    phases = (np.arange(16) / 4.0) % 1.0
    assert phase_contrast(torch.tensor(periodic), phases=phases) == pytest.approx(phase_contrast(periodic, 4))
    batch = np.stack([_periodic_embeddings(16, 4), _periodic_embeddings(16, 8)])
    assert phase_contrast(batch, [4, 8]) > 1.0
    assert phase_contrast(batch, [8, 4]) < phase_contrast(batch, [4, 8])


def test_phase_contrast_input_errors():
    from echofm.analysis.periodicity import phase_contrast

    with pytest.raises(ValueError, match="exactly one"):
        phase_contrast(np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"\[T, D\] or \[N, T, D\]"):
        phase_contrast(np.ones(4), 2)
    assert math.isnan(phase_contrast(np.ones((2, 3)), 100))  # no pair is opposite


# --- CLI ------------------------------------------------------------------------------------

def test_cli_print_config_and_clear_errors(tmp_path, capsys):
    import json

    from echofm.cli import main

    assert main(["pretrain", "--config", "tiny", "--data", "synth:4", "--out", str(tmp_path / "r"),
                 "--steps", "7", "--set", "model.mask_ratio=0.9", "--batch-size", "2",
                 "--no-activation-checkpointing", "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["steps"] == 7 and resolved["model"]["mask_ratio"] == 0.9 and resolved["batch_size"] == 2
    assert main(["pretrain", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"),
                 "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "missing: no such directory" in err and "echofm pretrain: error:" in err
    assert main(["pretrain", "--config", str(tmp_path / "x.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "x.yaml: no such config file" in capsys.readouterr().err


# --- the real data sources wired together -------------------------------------------------

MICRO = ["--set", "model.img_size=32", "--set", "model.patch_size=8", "--set", "model.embed_dim=32",
         "--set", "model.depth=1", "--set", "model.num_heads=2", "--set", "model.decoder_embed_dim=32",
         "--set", "model.decoder_depth=1", "--set", "model.decoder_num_heads=2"]


def test_specs_mix_sources_and_synth_is_deterministic(tmp_path):
    from echofm.phantom import generate_case
    from echofm.batch import BatchOptions
    from echofm.preprocess.prepare import prepare
    from echofm.preprocess.transforms import PreprocessConfig
    from echofm.train.data import build_pretrain_dataset

    (tmp_path / "videos").mkdir()
    for i in range(3):
        np.save(tmp_path / "videos" / f"clip{i}.npy", generate_case(i).frames)
    prepare([tmp_path / "videos"], tmp_path / "cache", PreprocessConfig(size=48), workers=1, options=BatchOptions(progress=False))
    cfg = preset("tiny").replace(img_size=32, patch_size=8)
    mixed = build_pretrain_dataset(["synth:5", str(tmp_path / "cache")], cfg, seed=1, augment=True)
    assert len(mixed) == 8 and mixed[7].shape == (3, 16, 32, 32)
    folder = build_pretrain_dataset([str(tmp_path / "videos")], cfg, seed=1)
    assert len(folder) == 3 and folder[0].shape == (3, 16, 32, 32)
    again = build_pretrain_dataset(["synth:5"], cfg, seed=1)
    other = build_pretrain_dataset(["synth:5"], cfg, seed=2)
    assert torch.equal(mixed[2], again[2]) and not torch.equal(again[2], other[2])


def test_cli_runs_stops_and_resumes(tmp_path, capsys):
    from echofm.cli import main
    from echofm.train import checkpoint as ckpt

    run = tmp_path / "run"
    base = ["pretrain", "--data", "synth:8", "--out", str(run), "--steps", "4", "--batch-size", "2",
            "--workers", "0", "--checkpoint-every", "2", "--no-progress", "--device", "cpu", *MICRO]
    assert main([*base, "--stop-after", "2"]) == 0
    assert "continue with --resume auto" in capsys.readouterr().out
    assert [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")] == [2]
    # Resuming needs no --config: RUN/config.yaml describes the run.
    assert main(["pretrain", "--out", str(run), "--resume", "auto", "--no-progress"]) == 0
    assert (run / "model" / "model.safetensors").is_file() and (run / "config.yaml").is_file()
    import echofm

    assert echofm.load_model(run / "model").cfg.embed_dim == 32
