"""The label-efficiency study: its statistics, the shifted phantom preset, the --quick benchmark
end to end (JSON, HTML, PNG; every cell with intervals and an honest verdict), and that the
same seed on the same machine gives the same scores and byte-identical figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from echofm.analysis.statistics import NO_CLEAR_DIFFERENCE, oriented_gain, paired_bootstrap, t_interval, verdict
from echofm.experiments.label_efficiency import (HELDOUT_SETS, METRICS, MODES, TASKS, LabelEfficiencyConfig,
                                                 run_label_efficiency)
from echofm.phantom import PhantomConfig, generate_case, phantom_preset

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gain_is_oriented_so_positive_means_the_first_arm_did_better():
    assert oriented_gain([0.9], [0.8], higher_is_better=True)[0] == pytest.approx(0.1)
    assert oriented_gain([5.0], [7.0], higher_is_better=False)[0] == pytest.approx(2.0)


def test_paired_bootstrap_finds_a_clear_shift_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(10, 3, 200)  # large between-clip spread, shared by both arms
    better = paired_bootstrap(base - 1.0 + rng.normal(0, 0.2, 200), base, higher_is_better=False, resamples=1000)
    assert better.lo > 0.9 and better.hi < 1.1 and better.n == 200  # the pairing cancels the clips' spread
    assert verdict(better.lo, better.hi) == "pretrained better"
    same = paired_bootstrap(base + rng.normal(0, 0.5, 200), base + rng.normal(0, 0.5, 200), True, resamples=1000)
    assert same.lo < 0 < same.hi and verdict(same.lo, same.hi) == NO_CLEAR_DIFFERENCE


def test_t_interval_and_verdict_edges():
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci.mean == 2.0 and ci.hi - 2.0 == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)
    one = t_interval([0.5])
    assert one.lo is None and verdict(one.lo, one.hi) == NO_CLEAR_DIFFERENCE
    assert verdict(-0.3, -0.1) == "random init better" and verdict(-0.1, 0.2) == NO_CLEAR_DIFFERENCE


def test_default_preset_is_the_default_phantom_and_shifted_moves_the_domain():
    assert phantom_preset("default") == PhantomConfig().validate()
    cases = [generate_case(s, phantom_preset("shifted", size=48, num_frames=8)) for s in range(6)]
    for case in cases:
        assert 28.0 <= case.truth["sector"]["half_angle_deg"] <= 34.0  # default 36-45
        assert 22.0 <= case.truth["ef"] <= 68.0 and case.truth["heart_rate"] >= 90.0  # drawn 25-65 %, 100-140 bpm
    default = generate_case(0, PhantomConfig(size=48, num_frames=8))
    shifted = generate_case(0, phantom_preset("shifted", size=48, num_frames=8))
    assert shifted.truth["sector"]["depth_mm"] > default.truth["sector"]["depth_mm"]
    with pytest.raises(Exception, match="unknown"):
        phantom_preset("clinical")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("label_efficiency_benchmark", BENCHMARKS / "label_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("label_efficiency")
    report = module.main(["--quick", "--out", str(out), "--quiet", "--threads", "1"])
    return out, report


def test_quick_benchmark_writes_every_cell_with_intervals(quick):
    out, report = quick
    summary = json.loads((out / "label_efficiency.json").read_text())
    cells = summary["cells"]
    assert {(c["task"], c["mode"], c["heldout"]) for c in cells} == {
        (t, m, h) for t in TASKS for m in MODES for h in HELDOUT_SETS} | {("ed_es", "steps", h) for h in HELDOUT_SETS}
    assert len(report["cells"]) == len(cells) and report["cpu"]
    for c in cells:
        assert (c["metric"], c["higher_is_better"]) == METRICS[c["task"]] and c["seeds"] == [0, 1]
        lo, hi = c["gain_ci95_clips"]
        assert lo <= hi and c["clips"] == summary["config"]["heldout_clips"]
        slo, shi = c["gain_ci95_seeds"]
        assert slo <= c["gain_mean"] <= shi
        clear = (lo > 0 and slo > 0) or (hi < 0 and shi < 0)
        assert (c["verdict"] != NO_CLEAR_DIFFERENCE) == clear, c
    # Every run is in the incremental log too, one line each.
    lines = (out / "runs.jsonl").read_text().splitlines()
    phase = 3 * len(HELDOUT_SETS) * 2  # ED/ES from step embeddings: pretrained, random and the pixel rule, 2 seeds
    assert len(lines) == len(summary["runs"]) == len(TASKS) * len(MODES) * len(HELDOUT_SETS) * 2 * 2 + phase
    # ED/ES cells state the share of events within 2 frames; the pixel-rule comparison has
    # a row per held-out set with a verdict that follows its intervals.
    for c in cells:
        if c["task"] == "ed_es":
            assert 0.0 <= c["pretrained_within_2"] <= 1.0 and 0.0 <= c["random_within_2"] <= 1.0
    assert [c["heldout"] for c in summary["pixel_rule"]] == list(HELDOUT_SETS)
    for c in summary["pixel_rule"]:
        lo, hi = c["gain_ci95_clips"]
        slo, shi = c["gain_ci95_seeds"]
        assert lo <= c["gain_mean"] + 1e-9 or lo <= hi
        assert (c["verdict"] == "pixel rule better") == (hi < 0 and shi < 0) and c["at_least_as_good"] == (
            c["verdict"] != "pixel rule better")
        assert c["gain_mean"] == pytest.approx(c["pixels_mean"] - c["steps_mean"])
    assert "pixel rule" in (out / "label_efficiency.html").read_text()
    page = (out / "label_efficiency.html").read_text()
    assert "Synthetic phantoms, not clinical data" in page and "no clear difference" in page
    # The encoder pretrained here states the frame rate its clips were made at (its contract).
    from echofm.model import load_model

    assert load_model(out / "pretrain" / "model").contract.fps == pytest.approx(summary["config"]["fps"])
    for name in summary["figures"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and name in page or name.startswith("arms_")


def test_same_seed_same_machine_gives_identical_scores_and_figures(tmp_path):
    import torch

    before = torch.get_num_threads()
    threads = 2 if before == 1 else 1  # other than the caller's, to see that it is put back

    def once(folder):
        config = LabelEfficiencyConfig(out=str(folder), tasks=["view", "segment"], ks=[4], seeds=[0], modes=["full"],
                                       size=32, frames=8, heldout_clips=4, steps=2, batch_size=4, pretrain_steps=2,
                                       pretrain_clips=4, heldout_sets=["heldout"], bootstrap=100, threads=threads)
        result = run_label_efficiency(config, say=lambda line: None)
        return result.summary, {p.name: p.read_bytes() for p in result.figures}

    first, first_png = once(tmp_path / "a")
    assert torch.get_num_threads() == before  # the study's thread count held inside the study only
    second, second_png = once(tmp_path / "b")
    assert [r["clip_scores"] for r in first["runs"]] == [r["clip_scores"] for r in second["runs"]]
    assert first["cells"] == second["cells"]
    assert first_png.keys() == second_png.keys() and all(first_png[k] == second_png[k] for k in first_png)


def test_within_share_counts_inner_events_within_two_frames():
    from echofm.experiments.label_efficiency import within_share

    truth = {"ed": [0, 5, 15], "es": [10]}  # frames 0 and 15 are clip edges of a 16-frame clip: not scored
    assert within_share([[truth, {"ed": [7], "es": [10]}]], 16) == pytest.approx(1.0)  # 2 and 0 frames off
    assert within_share([[truth, {"ed": [8], "es": []}]], 16) == pytest.approx(0.0)  # 3 off, ES missed
    assert within_share([[truth, {"ed": [5], "es": [13]}], [truth, {"ed": [9], "es": [10]}]], 16) == pytest.approx(0.5)


def test_cells_of_a_stopped_study_skip_a_cell_with_one_arm():
    from echofm.experiments.label_efficiency import summarise_cells

    run = {"task": "view", "mode": "full", "k": 8, "heldout": "heldout", "seed": 0, "value": 0.5,
           "clip_scores": [1.0, 0.0, 1.0, 0.0]}
    assert summarise_cells([{**run, "arm": "pretrained"}], resamples=50) == []
    cells = summarise_cells([{**run, "arm": "pretrained"}, {**run, "arm": "random", "clip_scores": [0.0] * 4,
                                                              "value": 0.0}], resamples=50)
    assert len(cells) == 1 and cells[0]["gain_mean"] == pytest.approx(0.5) and cells[0]["seeds"] == [0]


def test_benchmark_names_an_unusable_setting(capsys):
    spec = importlib.util.spec_from_file_location("label_efficiency_benchmark", BENCHMARKS / "label_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for argv, words in ((["--pretrain-presets", "clinical"], "pretrain_presets ['clinical']"),
                        (["--pretrain-set", "oops"], "--pretrain-set oops: expected KEY=VALUE"),
                        (["--head-only-fraction", "1.5"], "head_only_fraction 1.5")):
        with pytest.raises(SystemExit) as stop:
            module.main(["--quick", *argv])
        assert stop.value.code == 2 and words in capsys.readouterr().err


def test_format_ceilings_from_the_truth_beat_the_mean_and_find_the_events():
    """The model-free ceilings: the true LV area and volume find ED/ES, and EF from the true
    curves is far closer than the training mean; a bad clip count names itself."""
    from echofm.experiments.format_ceilings import format_ceilings

    result = format_ceilings(LabelEfficiencyConfig(size=32), clips=8)
    assert set(result["sets"]) == {"heldout", "shifted"} and result["size"] == 32
    for figures in result["sets"].values():
        assert figures["ed_es_from_true_volume"]["within_2"] >= 0.8
        assert figures["ed_es_from_true_mask_area"]["within_2"] >= 0.7
        mean = figures["ef_mae_of_the_mean"]
        assert figures["ef_mae_from_sampled_true_volume"] < 0.6 * mean
        assert figures["ef_mae_from_true_mask_area_calibrated"] < 0.8 * mean
    with pytest.raises(ValueError, match="clips 4"):
        format_ceilings(LabelEfficiencyConfig(), clips=4)
