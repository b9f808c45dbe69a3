"""Pretraining helps: echofm-tiny pretrained on phantoms vs the same encoder at random init.

The encoder is pretrained with the real engine (``echofm.train.pretrain``: EchoFM's masked
reconstruction and periodic contrastive objectives, preset defaults) on phantom clips; both
encoders are then adapted by the real fine-tuning engine (``finetune_and_evaluate``) with the
same probe, seed and data, and scored on held-out phantoms.

Protocol, and why:
- The random encoder is the pretraining run's own starting point (``EchoFM(cfg).encoder`` under
  the run's seed), so the comparison isolates what pretraining changed.
- Few labels (8 clips per view) and many held-out clips (64 per view): label efficiency is what
  pretraining buys, and a large test split keeps the score's noise below the margin.
- The attentive probe with the engine's default learning rate, trained until both probes fit
  their training clips (train loss ~0.05). With pretraining seeds 0, 1, 2 the pretrained encoder
  led by 19, 6 and 7 points of accuracy; the mean-pooled linear probe also led on average, but
  its lead ranged from 0 to 19 points, too close to the noise to assert.

Also asserted, because they hold for both encoders: statistics pooling (per-step tokens, their
mean and spread over time) reads EF that mean pooling misses, and a linear per-token head finds
the LV from frozen tokens.

What a 300-step CPU pretraining does not buy, measured with these encoders and so not asserted:
- EF (A4C, 96 train / 96 test, linear probe with statistics pooling): MAE 10.68 / 12.47 / 10.83
  pretrained (pretraining seeds 0 / 1 / 2) vs 12.38 / 12.21 / 12.70 random; after 600 steps at
  lr 1e-3 it was 13.98 / 12.58 / 11.97 pretrained. Which arm wins depends on the pretraining run.
- LV segmentation (same clips, linear per-token head, cross-entropy + Dice): Dice 0.84 pretrained
  vs 0.88 random (seed 0); on all four views 0.61 vs 0.64. A least-squares probe on the same
  tokens favours pretraining (0.82 / 0.79 / 0.77 vs 0.75 / 0.71 / 0.71 from 16 clips), but a
  head trained with cross-entropy can threshold the near-pixel tokens of a random encoder, and
  the phantom LV is a dark cavity in a stable place. The UNETR decoder, which reads the frames
  too, tied (0.80 / 0.86 / 0.80 vs 0.82 / 0.86 / 0.80).
"""

from __future__ import annotations

import pytest
import torch

from echofm.datasets import phantom_task_dataset
from echofm.model import EchoFM
from echofm.phantom import PhantomConfig
from echofm.tasks.engine import FinetuneConfig
from echofm.tasks.finetuning import finetune_and_evaluate
from echofm.train.config import load_pretrain_config
from echofm.train.data import PhantomClips
from echofm.train.pretrain import pretrain

SEED = 0
SIZE = 64  # echofm-tiny at 64 px: 4 x 4 patches of 16 px, 16 frames in 8 tubelets
PRETRAIN_CLIPS, PRETRAIN_STEPS = 256, 300


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """(pretrained, random-init) encoders; the random one is where pretraining started."""
    out = tmp_path_factory.mktemp("pretrain")
    cfg = load_pretrain_config("echofm-tiny", {
        "model.img_size": SIZE, "out": str(out), "steps": PRETRAIN_STEPS, "batch_size": 8, "lr": 5e-4,
        "warmup_fraction": 0.05, "workers": 0, "device": "cpu", "checkpoint_every": 0, "progress": False,
        "seed": SEED})
    torch.manual_seed(cfg.seed)  # what pretrain() does before building the model
    random_init = EchoFM(cfg.model).encoder
    # The ``synth:N`` source, generated once and held in memory (each clip is read ~10 times).
    source = PhantomClips(PRETRAIN_CLIPS, cfg.model, cfg.seed, cfg.frame_step)
    result = pretrain(cfg, dataset=[source[i] for i in range(len(source))])
    assert result.history[-1]["recon"] < 0.7 * result.history[0]["recon"]  # it did learn to reconstruct
    return result.model.encoder, random_init


def test_pretrained_encoder_classifies_views_better_from_few_labels(encoders, tmp_path):
    pretrained, random_init = encoders
    # 4 views x 72 clips: 8 per view to train on, 64 per view held out; seeds apart from pretraining's.
    data = phantom_task_dataset(288, PhantomConfig(size=SIZE, num_frames=16, fps=7.5), seed=100 + SEED,
                                splits=(1, 0, 8))
    assert data.counts() == {"train": 32, "val": 0, "test": 256}
    config = FinetuneConfig(task="view", mode="attentive", epochs=100, batch_size=8, warmup_epochs=5,
                            seed=SEED, validate=False, progress=False)
    accuracy = {}
    for name, encoder in (("pretrained", pretrained), ("random", random_init)):
        metrics = finetune_and_evaluate(data, encoder, config, tmp_path / name)
        assert metrics["samples"] == 256
        accuracy[name] = metrics["video"]["accuracy"]
    print(f"view accuracy, attentive probe, 256 held-out clips: {accuracy}")
    assert accuracy["pretrained"] >= accuracy["random"] + 0.03  # seeds 0, 1, 2 gave +19, +6, +7 points


@pytest.fixture(scope="module")
def a4c():
    """A4C phantoms with EF and LV maps on every frame: 96 to train on, 96 held out."""
    data = phantom_task_dataset(192, PhantomConfig(size=SIZE, num_frames=16, fps=7.5, views=("A4C",)),
                                seed=100 + SEED, splits=(1, 0, 1), structures="lv", labelled="all")
    assert data.counts() == {"train": 96, "val": 0, "test": 96}
    return data


def test_statistics_pooling_reads_ef_that_mean_pooling_misses(encoders, a4c, tmp_path):
    """EF is a change over the cycle: a probe on the clip's mean token cannot see it, one on the
    spread of the per-step tokens over time can. This holds for both encoders (seed 0: mean
    pooling 13.95 / 14.60 MAE, at predict-the-mean level; stats 10.68 / 12.38)."""
    train_ef = [float(s.targets["ef"]) for s in a4c.split("train")]
    test_ef = [float(s.targets["ef"]) for s in a4c.split("test")]
    mean_level = sum(abs(y - sum(train_ef) / len(train_ef)) for y in test_ef) / len(test_ef)
    mae = {}
    for name, encoder in zip(("pretrained", "random"), encoders):
        for pooling in ("mean", "stats"):
            config = FinetuneConfig(task="ef", mode="linear", pooling=pooling, epochs=20, batch_size=8, seed=SEED,
                                    validate=False, progress=False)
            metrics = finetune_and_evaluate(a4c, encoder, config, tmp_path / f"{name}_{pooling}")
            mae[name, pooling] = metrics["video"]["mae"]
    print(f"EF MAE, linear probe, 96 held-out clips (predicting the training mean: {mean_level:.2f}): {mae}")
    for name in ("pretrained", "random"):
        assert mae[name, "stats"] <= mae[name, "mean"] - 1.0
        assert mae[name, "stats"] <= 0.9 * mean_level
    assert FinetuneConfig(task="ef").resolved_pooling == "stats"  # what echofm finetune --task ef uses


def test_linear_segmentation_probe_finds_the_lv_from_frozen_tokens(encoders, a4c, tmp_path):
    """One linear map per token, no access to the frames: whatever it segments comes from the
    encoder. Both encoders reach LV Dice above 0.75 (seed 0: 0.84 pretrained, 0.88 random; a
    random encoder's tokens are near-invertible projections of the pixels, and the phantom LV
    is a dark cavity, so pretraining is not what finds it here)."""
    dice = {}
    for name, encoder in zip(("pretrained", "random"), encoders):
        config = FinetuneConfig(task="segment", mode="linear", epochs=20, batch_size=8, seed=SEED, validate=False,
                                progress=False)
        assert config.resolved_seg_head == "linear"
        metrics = finetune_and_evaluate(a4c, encoder, config, tmp_path / name)
        assert metrics["frames"] == 96 * 16  # every frame of every held-out clip is scored
        dice[name] = metrics["pooled"]["dice"]["lv_cavity"]
    print(f"LV Dice, linear segmentation probe, 96 held-out clips: {dice}")
    assert min(dice.values()) > 0.75
