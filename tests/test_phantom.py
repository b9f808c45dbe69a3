"""Phantom generator: determinism, variety, physiology and label-map ground truth."""

import numpy as np
import pytest

from echofm.errors import EchoFMError
from echofm.phantom import PhantomConfig, generate_case

SMALL = PhantomConfig(size=64, num_frames=40, fps=30.0)


def test_same_seed_same_case():
    a = generate_case(11, SMALL)
    b = generate_case(11, SMALL)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
    assert a.truth == b.truth


def test_different_seeds_different_hearts():
    cases = [generate_case(s, SMALL, view="A4C") for s in range(4)]
    efs = {round(c.ef, 3) for c in cases}
    assert len(efs) == 4
    assert not np.array_equal(cases[0].frames, cases[1].frames)
    assert len({round(c.truth["edv"], 3) for c in cases}) == 4


def test_layout_and_truth_fields():
    c = generate_case(3, SMALL)
    T = SMALL.num_frames
    assert c.frames.shape == (T, 64, 64) and c.frames.dtype == np.uint8
    assert c.labels.shape == (T, 64, 64) and c.labels.dtype == np.uint8
    t = c.truth
    for key in ("view", "fps", "heart_rate", "ef", "edv", "esv", "ed_frames", "es_frames", "disease", "params"):
        assert key in t
    assert abs(t["ef"] - 100 * (t["edv"] - t["esv"]) / t["edv"]) < 1e-9
    assert t["disease"]["as_severity"] in ("none", "mild", "moderate", "severe")
    clip = c.to_clip()
    assert clip.source_kind == "phantom" and clip.fps == SMALL.fps


@pytest.mark.parametrize("view", ["A4C", "A2C", "PLAX", "PSAX"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lv_area_peaks_at_ed_and_dips_at_es(view, seed):
    c = generate_case(seed, PhantomConfig(size=96, num_frames=60, fps=40.0), view=view)
    area = (c.labels == 1).sum(axis=(1, 2)).astype(float)
    assert c.truth["ed_frames"] and c.truth["es_frames"]
    tol = 0.01 * area.max() + 2
    for f in c.truth["ed_frames"]:
        near = area[max(0, f - 3):f + 4]
        assert area[f] >= near.max() - tol, (f, area[f], near)
    for f in c.truth["es_frames"]:
        near = area[max(0, f - 3):f + 4]
        assert area[f] <= near.min() + tol, (f, area[f], near)
    assert area[c.truth["es_frames"]].mean() < area[c.truth["ed_frames"]].mean()


def test_volumes_follow_ef():
    for seed in range(6):
        c = generate_case(seed, PhantomConfig(size=48, num_frames=60, ef=(20.0, 70.0)))
        vol = np.array(c.truth["lv_volume"])
        assert 15.0 <= c.ef <= 75.0
        ed, es = c.truth["ed_frames"], c.truth["es_frames"]
        # Sampled volumes bracket the truth: the largest ~ EDV, the smallest ~ ESV.
        assert abs(vol[ed].mean() - c.truth["edv"]) / c.truth["edv"] < 0.12
        assert abs(vol[es].mean() - c.truth["esv"]) / c.truth["esv"] < 0.2


def test_pathology_can_be_forced():
    cfg = PhantomConfig(size=48, num_frames=4, as_fraction=1.0, ar_fraction=1.0, lvh_fraction=1.0,
                        irregular_fraction=1.0, ef=(20.0, 30.0))
    d = generate_case(5, cfg, view="PLAX").truth["disease"]
    assert d["as_severity"] != "none" and d["aortic_regurgitation"] and d["lvh"] and d["irregular_rhythm"]
    assert d["reduced_ef"]


def test_blood_dark_myocardium_bright():
    c = generate_case(8, PhantomConfig(size=112, num_frames=8), view="A4C")
    blood = c.frames[c.labels == 1].mean()
    myo = c.frames[c.labels == 2].mean()
    assert myo > blood + 40


def test_speckle_moves_and_decorrelates():
    c = generate_case(4, PhantomConfig(size=112, num_frames=20, fps=50.0), view="A2C")
    f = c.frames.astype(float)
    myo = (c.labels[0] == 2) & (c.labels[1] == 2)
    r1 = np.corrcoef(f[0][myo], f[1][myo])[0, 1]
    r10 = np.corrcoef(f[0][myo], f[10][myo])[0, 1]
    assert 0.2 < r1 < 0.995 and r10 < r1


def test_bad_config_names_the_field():
    with pytest.raises(EchoFMError, match="views"):
        PhantomConfig(views=("A5C",)).validate()
    with pytest.raises(EchoFMError, match="ef"):
        PhantomConfig(ef=(60.0, 20.0)).validate()
    with pytest.raises(EchoFMError, match="size"):
        generate_case(0, PhantomConfig(size=8))


def test_views_are_distinguishable_by_a_pixel_classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    cfg = PhantomConfig(size=48, num_frames=1)
    X, y = [], []
    for view in ("A4C", "A2C", "PLAX", "PSAX"):
        for seed in range(24):
            c = generate_case(1000 + seed, cfg, view=view)
            # Raw pixels, averaged over 4x4 blocks so that speckle does not dominate.
            X.append(c.frames[0].reshape(12, 4, 12, 4).mean(axis=(1, 3)).ravel() / 255.0)
            y.append(view)
    acc = cross_val_score(LogisticRegression(max_iter=2000, C=0.1), np.array(X), np.array(y), cv=3).mean()
    assert acc > 0.85, acc
