"""Periodicity diagnostics on constructed inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from echofm.analysis.diagnose import (cosine_similarity_maps, diagnose_clip, diagnose_embeddings, map_phase_contrast,
                                      off_diagonal_correlation, step_phases, summarize)
from echofm.analysis.periodicity import phase_contrast
from echofm.phantom import PhantomConfig, generate_case

W, T = 6, 16
PERIOD = 5.0  # steps per cycle


def _periodic_pixels(seed: int = 0, dim: int = 64) -> np.ndarray:
    """[W, T, dim]: a cycle of PERIOD steps drawn as fixed spatial patterns, plus noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, dim))
    t = np.arange(T)
    clean = np.cos(2 * np.pi * t / PERIOD)[:, None] * a + np.sin(2 * np.pi * t / PERIOD)[:, None] * b
    return clean[None] + 0.2 * rng.standard_normal((W, T, dim))


def _phases() -> np.ndarray:
    return np.broadcast_to(np.arange(T) / PERIOD, (W, T))


def test_off_diagonal_correlation_ignores_the_diagonal_and_scale():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 8))
    b = 3.0 * a + 1.0
    np.fill_diagonal(b, 100.0)  # the diagonal is not compared
    assert off_diagonal_correlation(a, b) == pytest.approx(1.0)
    assert off_diagonal_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(off_diagonal_correlation(a, np.ones((8, 8))))
    with pytest.raises(ValueError, match="square"):
        off_diagonal_correlation(a, a[:4])


def test_embeddings_equal_to_the_pixels_correlate_perfectly():
    pixels = _periodic_pixels()
    pixel_maps = cosine_similarity_maps(pixels)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((64, 64)))
    for embeddings in (pixels, 2.5 * pixels @ q):  # a rotation and scaling keep every cosine
        out = diagnose_embeddings(embeddings, pixel_maps, _phases())
        assert out["similarity_correlation"] == pytest.approx(1.0, abs=1e-9)
        assert out["phase_contrast"] == pytest.approx(out["pixel_phase_contrast"], abs=1e-9)
        assert out["phase_contrast"] > 1.0  # a clean cycle: same phase ~ +1, opposite ~ -1


def test_embeddings_that_ignore_time_have_no_contrast_and_no_correlation():
    rng = np.random.default_rng(2)
    constant = rng.standard_normal(32)
    embeddings = constant + 0.3 * rng.standard_normal((W, T, 32))
    out = diagnose_embeddings(embeddings, cosine_similarity_maps(_periodic_pixels()), _phases())
    assert abs(out["phase_contrast"]) < 0.05
    assert abs(out["similarity_correlation"]) < 0.15
    assert out["pixel_phase_contrast"] > 1.0
    # Without a period the contrasts are unknown, not zero.
    unknown = diagnose_embeddings(embeddings, cosine_similarity_maps(_periodic_pixels()), None)
    assert np.isnan(unknown["phase_contrast"]) and np.isfinite(unknown["similarity_correlation"])


def test_map_contrast_agrees_with_phase_contrast_of_embeddings():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((W, T, 8)) + _periodic_pixels(4, 8)
    phases = rng.uniform(0, 1, (W, T))
    assert map_phase_contrast(cosine_similarity_maps(z), phases) == pytest.approx(phase_contrast(z, phases=phases))


def test_step_phases_use_real_frame_indices():
    period = 10.0
    idx = np.array([[0, 1, 2, 3, 4, 5]])
    assert step_phases(idx, 1, period)[0] == pytest.approx(idx[0] / period)
    assert step_phases(idx, 2, period)[0] == pytest.approx([0.05, 0.25, 0.45])  # mean of each pair
    # A window wrapped around a short clip: frame 9 then frame 11 straddle a cycle boundary.
    wrapped = step_phases(np.array([[9, 11]]), 2, period)
    assert min(wrapped[0, 0], 1 - wrapped[0, 0]) == pytest.approx(0.0, abs=1e-9)


def test_summary_skips_unknown_values():
    rows = [{"phase_contrast": 0.2, "pixel_phase_contrast": float("nan"), "similarity_correlation": 0.5},
            {"phase_contrast": 0.4, "pixel_phase_contrast": float("nan"), "similarity_correlation": None}]
    s = summarize(rows)
    assert s["phase_contrast"]["mean"] == pytest.approx(0.3) and s["phase_contrast"]["n"] == 2
    assert s["pixel_phase_contrast"]["n"] == 0 and s["pixel_phase_contrast"]["median"] is None
    assert s["similarity_correlation"]["median"] == 0.5 and s["clips"] == 2


def test_diagnose_clip_with_a_model_gives_numbers_in_range():
    from echofm.model import load_model

    model = load_model("echofm-tiny").eval()
    case = generate_case(11, PhantomConfig(size=model.cfg.img_size, num_frames=64))
    true_period = 60.0 * case.fps / case.truth["heart_rate"]
    given = diagnose_clip(model, case.frames, period_frames=true_period, fps=case.fps, max_windows=2)
    assert given.period_source == "truth" and given.period_frames == pytest.approx(true_period)
    assert given.windows == 2 and given.embedding_map.shape == given.pixel_map.shape == (8, 8)
    assert -2 <= given.phase_contrast <= 2 and -2 <= given.pixel_phase_contrast <= 2
    assert -1 <= given.similarity_correlation <= 1
    found = diagnose_clip(model, case.frames, fps=case.fps, max_windows=2)
    assert found.period_source == "pixels"
    assert found.period_frames == pytest.approx(true_period, rel=0.15)
