"""ED/ES probe (echofm.analysis.probe): windows, targets, ridge, curve merging, events, scores."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from echofm.analysis.probe import (PhaseProbeConfig, PhaseVideo, curve_cycle, events_from_curve,
                                   merge_step_predictions, pixel_phase_baseline, probe_spec,
                                   run_phase_probe, score_events, step_targets, summarise_scores)
from echofm.phantom import PhantomConfig, generate_case
from echofm.probes.ridge import RidgeProbe

PHANTOM = PhantomConfig(size=64, num_frames=40, fps=15.0, views=("A4C", "A2C"))


@pytest.fixture(scope="module")
def phantom_videos() -> list[PhaseVideo]:
    videos = []
    for seed in range(16):
        case = generate_case(1000 + seed, PHANTOM)
        t = case.truth
        videos.append(PhaseVideo(id=f"p{seed}", frames=case.frames, volume=np.asarray(t["lv_volume"]),
                                 ed_frames=t["ed_frames"], es_frames=t["es_frames"], fps=t["fps"]))
    return videos


class RegionMeans:
    """A transparent encoder for testing the probe: each time step's embedding is the mean
    brightness of a 4x4 grid of image regions (and their squares), so it holds the cardiac
    phase only as far as the pixels show it. ``noise=True`` gives features of the same
    shape drawn at random (no information). Same interface as EchoFM: cfg, contract, embed, eval."""

    def __init__(self, size: int = 64, num_frames: int = 16, t_patch: int = 2, noise: bool = False):
        from echofm.contract import untrained_contract

        self.cfg = SimpleNamespace(img_size=size, num_frames=num_frames, t_patch_size=t_patch)
        self.contract = untrained_contract(self.cfg)
        self.noise = noise
        self.calls = 0

    def eval(self):
        return self

    def embed(self, clips: torch.Tensor):
        N, _, F, S, _ = clips.shape
        T, r = F // self.cfg.t_patch_size, S // 4
        x = clips[:, 0].reshape(N, T, self.cfg.t_patch_size, 4, r, 4, r).mean(dim=(2, 4, 6)).reshape(N, T, 16)
        feats = torch.cat([x, x ** 2], dim=-1)
        if self.noise:
            self.calls += 1
            feats = torch.randn(feats.shape, generator=torch.Generator().manual_seed(self.calls))
        return SimpleNamespace(frames=feats)


# --- pieces ------------------------------------------------------------------------------

def _starts(total, num_frames, frame_step, window_step):
    from echofm.windows import WindowSpec, window_starts

    return window_starts(total, WindowSpec(num_frames, frame_step, window_step))


def test_window_starts_cover_the_video():
    starts = _starts(40, 16, 1, 3)
    assert starts[0] == 0 and starts[-1] == 40 - 16
    assert all(0 < b - a <= 3 for a, b in zip(starts, starts[1:]))
    assert _starts(10, 16, 1, 3) == [0]
    assert _starts(47, 16, 2, 4)[-1] == 47 - 31


def test_probe_windows_follow_the_model_contract():
    from echofm.contract import InputContract

    model = SimpleNamespace(contract=InputContract(num_frames=16, image_size=64, fps=15.0))
    assert probe_spec(model, PhaseProbeConfig(), 30.0).frame_step == 2
    assert probe_spec(model, PhaseProbeConfig(frame_step=1), 30.0).frame_step == 1
    assert probe_spec(model, PhaseProbeConfig(window_step=5), 15.0).window_step == 5


def test_step_targets_standardise_each_window_and_skip_flat_ones():
    volume = np.array([100.0, 90, 70, 50, 45, 60, 80, 95])
    t = step_targets(volume, np.arange(8), 2)
    # Step volumes are the pair means 95, 60, 52.5, 87.5.
    assert t.shape == (4,)
    assert abs(t.mean()) < 1e-9 and abs(t.std() - 1) < 1e-9
    assert np.argmin(t) == 2 and np.argmax(t) == 0
    assert step_targets(np.full(8, 70.0), np.arange(8), 2) is None


def test_ridge_recovers_a_linear_map_and_shrinks_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 12)) * rng.uniform(0.5, 20, size=12)  # features on very different scales
    w = rng.normal(size=12)
    groups = np.repeat(np.arange(60), 10)
    y = (X / X.std(0)) @ w + 0.05 * rng.normal(size=600)
    probe = RidgeProbe((1e-4, 1e-2, 1.0)).fit(X[:500], y[:500], groups[:500])
    pred = probe.predict(X[500:])
    assert np.corrcoef(pred, y[500:])[0, 1] > 0.99
    assert probe.alpha == 1e-4  # little noise: least shrinkage wins the cross-validation
    noise = rng.normal(size=600)
    assert RidgeProbe((1e-4, 1e-2, 1.0)).fit(X, noise, groups).alpha == 1.0
    with pytest.raises(RuntimeError):
        RidgeProbe((1.0,)).predict(X)


def test_merged_windows_reconstruct_a_smooth_curve():
    total, F, t_patch = 40, 16, 2
    truth = np.sin(2 * np.pi * np.arange(total) / 13.0)
    windows = [np.arange(s, s + F) for s in _starts(total, F, 1, 3)]
    preds = [truth[w].reshape(-1, t_patch).mean(axis=1) for w in windows]  # a perfect probe, per step
    curve = merge_step_predictions(np.array(preds), windows, t_patch, total)
    assert curve.shape == (total,)
    # Step values are two-frame means, interpolated between step centres (held flat on the
    # first and last frame): close to the curve everywhere inside.
    assert np.max(np.abs(curve[1:-1] - truth[1:-1])) < 0.15
    assert np.corrcoef(curve, truth)[0, 1] > 0.99
    assert abs(curve_cycle(curve) - 13.0) < 0.6


def test_events_of_the_true_volume_curve_match_the_phantom(phantom_videos):
    errors = []
    for v in phantom_videos:
        ed, es = events_from_curve(v.volume)
        s = score_events({"ed": ed, "es": es}, {"ed": v.ed_frames, "es": v.es_frames}, v.num_frames, 1)
        errors += [e for k in ("ed", "es") for e in s[k]["errors"]]
    assert len(errors) > 2 * len(phantom_videos)
    assert np.mean([e <= 1 for e in errors]) >= 0.9


def test_scores_on_a_hand_made_case():
    s = score_events({"ed": [5, 20], "es": [12, 31]}, {"ed": [0, 6, 26], "es": [13, 39]}, num_frames=40, tolerance=2)
    # Inner true events: ED 6, 26 (0 is on the first frame); ES 13 (39 is the last frame).
    assert s["ed"]["errors"] == [1, 6] and s["es"]["errors"] == [1]
    # Predicted ED 5 lies near true 6, 20 near nothing; ES 12 near 13, 31 near nothing.
    assert s["ed"]["predicted_near_truth"] == 1 and s["es"]["predicted_near_truth"] == 1
    s["num_frames"] = 40
    missing = score_events({"ed": [], "es": [8]}, {"ed": [10], "es": [8]}, num_frames=30, tolerance=2)
    missing["num_frames"] = 30
    summary = summarise_scores([s, missing], tolerance=2)
    assert summary["ed_events"] == 3 and summary["es_events"] == 2
    assert summary["ed_found"] == pytest.approx(1 / 3)       # errors 1, 6 and a miss (counted as 30)
    assert summary["ed_mae_frames"] == pytest.approx((1 + 6 + 30) / 3)
    assert summary["es_found"] == pytest.approx(1.0) and summary["es_mae_frames"] == pytest.approx(0.5)
    assert summary["found"] == pytest.approx(3 / 5)
    assert summary["precision"] == pytest.approx(3 / 5)       # 5 predicted, 3 near a true event
    assert summary["mae_frames"] == pytest.approx((1 + 6 + 30 + 1 + 0) / 5)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        PhaseProbeConfig(window_step=0)
    with pytest.raises(ValueError):
        PhaseProbeConfig(alphas=(0.0,))
    with pytest.raises(ValueError):
        PhaseProbeConfig(folds=1)
    with pytest.raises(ValueError):
        PhaseProbeConfig(features=("pixels",))


# --- the whole probe ---------------------------------------------------------------------

def test_probe_finds_events_when_the_features_hold_the_phase(phantom_videos):
    train, test = phantom_videos[:10], phantom_videos[10:]
    only_frames = PhaseProbeConfig(features=("frames",))
    informative = run_phase_probe(RegionMeans(), train, test, only_frames)["frames"]
    blind = run_phase_probe(RegionMeans(noise=True), train, test, only_frames)["frames"]
    m, b = informative.metrics, blind.metrics
    assert m["tolerance_frames"] == 2 and m["videos"] == len(test)
    assert len(informative.records) == len(test)
    assert all(len(r["curve"]) == v.num_frames for r, v in zip(informative.records, test))
    assert m["found"] >= 0.6, m
    assert m["found"] > b["found"] + 0.2, (m, b)
    assert m["mae_frames"] < b["mae_frames"]
    assert informative.alpha in PhaseProbeConfig().alphas
    with pytest.raises(ValueError, match="LV volume"):
        run_phase_probe(RegionMeans(), [PhaseVideo("x", test[0].frames)], test, only_frames)


def test_probe_runs_on_a_real_encoder(phantom_videos):
    from echofm.config import preset
    from echofm.model.echofm import EchoFM

    cfg = preset("echofm-tiny")
    cfg.img_size = 32
    torch.manual_seed(0)
    results = run_phase_probe(EchoFM(cfg), phantom_videos[:4], phantom_videos[4:6], PhaseProbeConfig(window_step=8))
    assert set(results) == {"frames", "tokens"}
    for result in results.values():
        for key in ("found", "precision", "mae_frames", "ed_mae_frames", "es_mae_frames", "ed_found", "es_found"):
            assert math.isfinite(result.metrics[key]), key
        assert result.metrics["videos"] == 2


def test_pixel_baseline_scored_like_the_probe(phantom_videos):
    res = pixel_phase_baseline(phantom_videos, tolerance=2)
    assert res.metrics["videos"] == len(phantom_videos)
    assert res.metrics["found"] >= 0.6, res.metrics
    assert res.records[0]["true_ed_frames"] == list(phantom_videos[0].ed_frames)


def test_phase_videos_from_phantom_samples_carry_volume_events_and_rate():
    from echofm.analysis.probe import phase_videos
    from echofm.datasets import phantom_task_dataset
    from echofm.phantom import PhantomConfig

    samples = phantom_task_dataset(2, PhantomConfig(size=32, num_frames=12, fps=10, views=("A4C",)), seed=3,
                                   splits=(1, 0, 0), structures="lv").samples
    for video, sample in zip(phase_videos(samples), samples):
        assert video.frames.shape[0] == len(video.volume) == 12 and video.fps == 10
        assert video.ed_frames == sample.meta["ed_frames"] and video.es_frames == sample.meta["es_frames"]
        # ED is the fullest LV: the volume at an ED frame is above the volume at any ES frame.
        assert min(video.volume[f] for f in video.ed_frames) > max(video.volume[f] for f in video.es_frames)
