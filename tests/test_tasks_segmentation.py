"""Segmentation end to end on an EchoNet layout (sparse ED/ES tracings), plus label schemes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from echofm.datasets import read_dataset
from echofm.tasks import evaluate, finetune
from echofm.tasks.disease import map_disease_label
from echofm.tasks.engine import FinetuneConfig, subsample
from echofm.train.optim import encoder_layer, param_groups
from echofm.tasks.adapter import TaskModel, TaskSpec
from echofm.model.echofm import VideoEncoder
from echofm import ModelConfig
from tests._downstream import TINY_ENCODER, beating_disc, disc_chords, disc_radius, save_tiny_model, write_avi

SIZE, FRAMES, PERIOD = 32, 16, 8.0


@pytest.fixture(scope="module")
def echonet(tmp_path_factory):
    root = tmp_path_factory.mktemp("echonet")
    (root / "Videos").mkdir()
    rng = np.random.default_rng(1)
    files, traces = [], []
    for i in range(8):
        ef = float(rng.uniform(30, 70))
        name = f"0X{i:02d}"
        write_avi(root / "Videos" / f"{name}.avi", beating_disc(FRAMES, SIZE, ef, PERIOD, seed=i, phase=0.0))
        files.append([name, ef, 1, 1, SIZE, SIZE, 25, FRAMES, ["TRAIN", "TRAIN", "TRAIN", "VAL", "TRAIN", "TRAIN",
                                                                 "TEST", "TEST"][i]])
        for frame in (4, 8):  # ES (smallest disc) listed first, then ED
            r = disc_radius(SIZE, ef, frame, PERIOD, 0.0)
            traces += [[f"{name}.avi", *row, frame] for row in disc_chords(SIZE / 2, SIZE / 2, r)]
    with open(root / "FileList.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"])
        w.writerows(files)
    with open(root / "VolumeTracings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
        w.writerows(traces)
    save_tiny_model(root / "init")
    return root


def test_segmentation_finetune_and_evaluate(echonet, tmp_path):
    data = read_dataset("echonet", echonet, task="segment")
    assert all((s.meta["ed_frame"], s.meta["es_frame"]) == (8, 4) for s in data.samples)
    cfg = FinetuneConfig(task="segment", mode="full", epochs=6, batch_size=3, blr=8e-2, warmup_epochs=0,
                         frame_step=2, progress=False)
    result = finetune(data, echonet / "init", cfg, tmp_path / "run")
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.model.spec.classes == ["background", "lv_cavity"]
    assert result.history[0]["val_metric"] == "pooled.dice_mean"
    metrics = evaluate(tmp_path / "run", data, split="test", out_dir=tmp_path / "eval")
    assert metrics["frames"] == 4  # two videos, ED and ES each
    assert metrics["pooled"]["dice"]["lv_cavity"] > 0.5  # a bright disc on a dark field is learnable
    assert "ef_from_segmentation" in metrics
    records = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert records[0]["ef_from_segmentation"]["ed_frame"] == 8
    assert (tmp_path / "eval" / "segmentation_overlays.png").stat().st_size > 1000


def test_aortic_stenosis_and_regurgitation_schemes():
    assert [map_disease_label(x, "as4") for x in ("no_AS", "mild_AS", "mildtomod_AS", "moderate_AS", "severe_AS")] \
        == ["none", "mild", "mild", "moderate", "severe"]
    assert [map_disease_label(x, "as3") for x in ("no_AS", "mild_AS", "mildtomod_AS", "moderate_AS", "severe_AS")] \
        == ["none", "early", "early", "significant", "significant"]
    assert [map_disease_label(x, "ar") for x in ("0", "trace", "mild", "1", "what")] == \
        ["absent", "absent", "present", "present", None]
    assert map_disease_label(" Bicuspid ", "multiclass") == "Bicuspid"


def test_label_fraction_is_stratified_grouped_and_seeded():
    from echofm.datasets.base import Sample

    samples = [Sample(id=f"s{i}", path=None, split="train", group=f"g{i // 2}") for i in range(20)]
    strata = [i % 4 < 2 for i in range(20)]  # groups are whole within a stratum
    a = subsample(samples, 0.5, seed=3, strata=strata)
    assert a == subsample(samples, 0.5, seed=3, strata=strata)
    groups = {}
    for s in a:
        groups.setdefault(s.group, []).append(s)
    assert all(len(v) == 2 for v in groups.values())  # a group is kept whole
    assert sum(strata[int(s.id[1:])] for s in a) == len(a) / 2
    assert len(subsample(samples, 0.01, seed=0, strata=strata)) == 4  # at least one group per stratum


def test_layer_wise_lr_decay_and_frozen_modes():
    enc = VideoEncoder(ModelConfig(**TINY_ENCODER))
    full = TaskModel(enc, TaskSpec(task="ef", kind="regression"), "full")
    depth = full.cfg.depth
    groups = param_groups(full, weight_decay=0.05, layer_decay=0.5, layer_of=encoder_layer(depth), num_layers=depth)
    scale = {}
    for g in groups:
        for p in g["params"]:
            scale[id(p)] = g["lr_scale"]
    named = dict(full.named_parameters())
    assert scale[id(named["head.probe.linear.weight"])] == 1.0
    assert scale[id(named["encoder.blocks.1.mlp.fc1.weight"])] == 0.5
    assert scale[id(named["encoder.blocks.0.mlp.fc1.weight"])] == 0.25
    assert scale[id(named["encoder.patch_embed.proj.weight"])] == 0.125
    assert all(g["weight_decay"] == 0.0 for g in groups if any(p.ndim <= 1 for p in g["params"]))
    probe = TaskModel(VideoEncoder(ModelConfig(**TINY_ENCODER)), TaskSpec(task="view", kind="multiclass",
                                                                           classes=["a", "b"]), "linear")
    assert not any(p.requires_grad for p in probe.encoder.parameters())
    assert all(g["lr_scale"] == 1.0 for g in param_groups(probe, 0.0, 0.5, encoder_layer(depth), depth))
