"""Task models saved before batch-normed probes and the linear segmentation head still load.

Earlier task models standardised the linear probe's input with a per-sample LayerNorm and
always used the UNETR decoder for segmentation; their ``task.json`` has no ``probe_norm``,
``pooling`` or ``seg_head``. Loading must rebuild exactly that model, not today's default.
"""

from __future__ import annotations

import json

import torch

from echofm import ModelConfig
from echofm.model.echofm import VideoEncoder
from echofm.model.heads import FeatureNorm, LinearSegmentationProbe, SegmentationDecoder
from echofm.tasks.adapter import TASK_FILE, TaskModel, TaskSpec, load_task_model, save_task_model

CFG = dict(img_size=32, patch_size=8, num_frames=4, t_patch_size=2, embed_dim=24, depth=2, num_heads=2,
           decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, pred_t_dim=2)


def _strip_new_fields(run):
    info = json.loads((run / TASK_FILE).read_text())
    for key in ("probe_norm", "pooling", "seg_head"):
        info["spec"].pop(key)
    (run / TASK_FILE).write_text(json.dumps(info))


def test_a_layer_normed_probe_saved_before_batch_norm_loads_unchanged(tmp_path):
    torch.manual_seed(0)
    spec = TaskSpec(task="ef", kind="regression", target="ef", target_mean=50.0, target_std=10.0,
                    probe_norm="layer")
    model = TaskModel(VideoEncoder(ModelConfig(**CFG)), spec, "linear").eval()
    assert isinstance(model.head.probe.norm, torch.nn.LayerNorm)
    save_task_model(model, tmp_path / "old")
    _strip_new_fields(tmp_path / "old")
    loaded = load_task_model(tmp_path / "old")
    assert loaded.spec.probe_norm == "layer" and loaded.spec.pooling == "mean"
    clips = torch.rand(3, 3, 4, 32, 32)
    assert torch.equal(loaded(clips), model(clips))


def test_new_defaults_batch_norm_probe_and_linear_segmentation_head(tmp_path):
    torch.manual_seed(0)
    encoder = VideoEncoder(ModelConfig(**CFG))
    probe = TaskModel(encoder, TaskSpec(task="ef", kind="regression", pooling="stats"), "linear")
    assert isinstance(probe.head.probe.norm, FeatureNorm) and probe.head.probe.linear.in_features == 48
    seg_spec = TaskSpec(task="segment", kind="segmentation", classes=["background", "lv_cavity"], seg_head="linear")
    seg = TaskModel(encoder, seg_spec, "linear").eval()
    assert isinstance(seg.head, LinearSegmentationProbe) and seg.spec.seg_layers == [1]  # the last block
    save_task_model(seg, tmp_path / "seg")
    clips = torch.rand(2, 3, 4, 32, 32)
    assert torch.equal(load_task_model(tmp_path / "seg")(clips), seg(clips))
    # An old segmentation model (no seg_head recorded) is the UNETR decoder it was trained as.
    old = TaskModel(encoder, TaskSpec(task="segment", kind="segmentation", classes=["background", "lv_cavity"]),
                    "linear").eval()
    save_task_model(old, tmp_path / "old_seg")
    _strip_new_fields(tmp_path / "old_seg")
    loaded = load_task_model(tmp_path / "old_seg")
    assert isinstance(loaded.head, SegmentationDecoder)
    assert torch.equal(loaded(clips), old(clips))
