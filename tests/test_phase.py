"""Cardiac phase from pixels: cycle length, heart rate and ED/ES frames against phantom truth."""

from __future__ import annotations

import numpy as np
import pytest

from echofm.analysis.phase import phase_from_embeddings, phase_from_pixels
from echofm.phantom import PhantomConfig, case_seed, generate_case


def _within_one(pred: list[int], truth: list[int]) -> list[bool]:
    return [min((abs(p - t) for p in pred), default=99) <= 1 for t in truth]


@pytest.fixture(scope="module")
def phantom_results():
    cfg = PhantomConfig(size=112, num_frames=64)
    out = []
    for i in range(16):
        case = generate_case(case_seed(2024, i), cfg)
        out.append((case, phase_from_pixels(case.frames, case.fps)))
    return out


def test_cycle_length_and_heart_rate_match_truth(phantom_results):
    errors = []
    for case, res in phantom_results:
        true_cycle = 60.0 * case.fps / case.truth["heart_rate"]
        errors.append(abs(res.cycle_frames - true_cycle) / true_cycle if res.cycle_frames else 1.0)
        if res.cycle_frames:
            assert res.heart_rate_bpm == pytest.approx(60.0 * case.fps / res.cycle_frames)
    assert np.mean(np.array(errors) < 0.10) >= 0.75, errors


def test_ed_es_within_one_frame_on_most_clips(phantom_results):
    good = 0
    for case, res in phantom_results:
        hits = _within_one(res.ed_frames, case.truth["ed_frames"]) + _within_one(res.es_frames, case.truth["es_frames"])
        good += np.mean(hits) >= 0.5
    assert good / len(phantom_results) >= 0.6


def test_phase_from_embeddings_reads_the_cycle():
    steps, period = 16, 4
    t = np.arange(steps)
    z = np.stack([np.cos(2 * np.pi * t / period), np.sin(2 * np.pi * t / period)], 1)
    z = np.concatenate([z, 0.05 * np.random.default_rng(0).standard_normal((steps, 6))], 1)
    res = phase_from_embeddings(z, frames_per_step=2, fps=30.0)
    assert res.cycle_frames == pytest.approx(8.0, abs=0.5)
    assert res.heart_rate_bpm == pytest.approx(225.0, rel=0.07)


def test_static_or_short_clip():
    with pytest.raises(ValueError, match="at least 6 frames"):
        phase_from_pixels(np.zeros((3, 32, 32), np.uint8))
    still = np.repeat(np.random.default_rng(0).integers(0, 255, (1, 32, 32), dtype=np.uint8), 20, 0)
    assert phase_from_pixels(still, 30.0).cycle_frames is None
