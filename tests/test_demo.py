"""`echofm demo --quick` end to end: report.html links real files, demo_summary.json holds
every figure for both arms, the printed table says the same; options and output folder."""

from __future__ import annotations

import contextlib
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from echofm.cli import build_parser, main
from echofm.commands import demo as demo_command
from echofm.experiments import demo


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    pytest.importorskip("pydicom.data")
    out = tmp_path_factory.mktemp("demo") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["demo", "--quick", "--out", str(out), "--workers", "1"])
    return SimpleNamespace(out=out, rc=rc, stdout=printed.getvalue(),
                           summary=json.loads((out / "demo_summary.json").read_text()))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_demo_report_links_files_that_exist(quick_demo):
    assert quick_demo.rc == 0
    parser = _Links()
    parser.feed((quick_demo.out / "report.html").read_text())
    assert parser.tables >= 3
    links = set(parser.links)
    assert all(not link.startswith(("http:", "https:", "/")) for link in links)
    missing = [link for link in links if not (quick_demo.out / link).is_file()]
    assert not missing, missing
    expected = {"pretrain/report.html", "pretrain/report_curves.png", "figures/phantom_deid.png",
                f"comparison/arms_full_k{quick_demo.summary['config']['compare_k']}.png",
                "comparison/label_efficiency.html", "probes/frozen/ed_es_examples.png",
                "real_a4c/phase.png", "real_a4c/first_frame_masked.png", "demo_summary.json"}
    assert expected <= links, expected - links


def test_report_says_synthetic_first(quick_demo):
    text = (quick_demo.out / "report.html").read_text()
    body = text[text.index("<body"):]
    assert "synthetic phantoms, not clinical data" in body[:600].lower()
    assert "synthetic phantoms, not clinical data" in quick_demo.stdout


def test_comparison_rows_carry_intervals_and_honest_verdicts(quick_demo):
    rows = quick_demo.summary["comparison"]
    k = quick_demo.summary["config"]["compare_k"]
    assert {r["task"] for r in rows} == {"ef", "view", "segment", "ed_es"}
    assert [r["mode"] for r in rows] == ["full"] * 4  # ED/ES from step embeddings: the frozen probes' table
    expected_metric = {"ef": ("mae", False), "view": ("accuracy", True), "segment": ("lv_dice", True),
                       "ed_es": ("frame_error", False)}
    for r in rows:
        assert {"task", "metric", "k", "heldout", "pretrained_mean", "random_mean", "gain_ci95",
                "higher_is_better"} <= set(r)
        assert (r["metric"], r["higher_is_better"]) == expected_metric[r["task"]] and r["k"] == k
        assert r["heldout"] == "heldout"
        lo, hi = r["gain_ci95"]
        assert _finite(lo) and _finite(hi) and lo <= hi
        gain = r["pretrained_mean"] - r["random_mean"] if r["higher_is_better"] else r["random_mean"] - r["pretrained_mean"]
        assert lo - 1e-9 <= gain <= hi + 1e-9  # the mean gain lies inside its own bootstrap interval
        if lo <= 0 <= hi:
            assert r["verdict"] == "no clear difference"
        else:
            assert r["verdict"] == ("pretrained better" if lo > 0 else "random init better")


def test_summary_has_every_figure_for_both_arms(quick_demo):
    s = quick_demo.summary
    for arm in ("pretrained", "random"):
        for kind in s["probes"]["ed_es"]["features"]:
            metrics = s["probes"]["ed_es"][kind][arm]
            assert all(_finite(metrics[k]) for k in ("found", "mae_frames", "precision", "ed_found", "es_found",
                                                      "ed_mae_frames", "es_mae_frames")), metrics
            assert metrics["videos"] == s["data"]["test"]["prepared"]
    assert set(s["probes"]["ed_es"]["features"]) == {"frames", "tokens"}
    for task, keys in (("ef_ridge", ("mae", "r2", "rmse")), ("view_ridge", ("accuracy", "balanced_accuracy"))):
        for arm in ("pretrained", "random"):
            assert all(_finite(s["probes"][task][arm][k]) for k in keys), (task, arm)
    assert len(s["table"]) == 2 + 3 * 2
    for row in s["table"]:
        assert _finite(row["pretrained"]) and _finite(row["random"]), row
        assert "better" not in row  # no interval, so no winner named
    # The references are measured too: the training-mean EF, the majority view, pixels alone.
    assert _finite(s["probes"]["ef_ridge"]["reference"]["mae"])
    assert 0 <= s["probes"]["view_ridge"]["reference"]["accuracy"] <= 1
    # The default demo loads the shipped reference model: its own pretraining log is summarised,
    # the phantoms follow its input contract, and the random arm starts from its pretraining seed.
    from echofm.model import load_model

    reference = load_model("echofm-tiny-phantom")
    assert s["config"]["pretrain"] is False and s["pretraining"]["source"] == "echofm-tiny-phantom"
    assert (s["config"]["size"], s["config"]["fps"]) == (reference.contract.image_size, reference.contract.fps)
    logged = (quick_demo.out / "pretrain" / "metrics.jsonl").read_text().splitlines()
    assert s["pretraining"]["steps"] == len([line for line in logged if '"loss"' in line]) > 100
    assert s["pretraining"]["random_init_seed"] == 0  # recipe.sh pretrains with --seed 0


def test_demo_can_pretrain_here_instead(tmp_path):
    pytest.importorskip("pydicom.data")
    out = tmp_path / "out"
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["demo", "--quick", "--pretrain", "--size", "64", "--clips", "8", "--test-clips", "4",
                   "--out", str(out), "--workers", "1"])
    s = json.loads((out / "demo_summary.json").read_text())
    assert rc == 0 and s["config"]["pretrain"] and s["config"]["size"] == 64
    assert s["pretraining"]["steps"] == s["config"]["steps"] == demo.QUICK["steps"]
    assert s["pretraining"]["random_init_seed"] == s["config"]["seed"]
    assert (out / "pretrain" / "model").is_dir() and (out / "pretrain" / "report.html").is_file()
    assert {r["task"] for r in s["comparison"]} == {"ef", "view", "segment", "ed_es"}


def test_loaded_model_sets_size_and_fps_and_a_clash_is_named(tmp_path):
    from echofm.model import load_model

    contract = load_model("echofm-tiny-phantom").contract
    parser = build_parser()
    for flags, words in ((["--size", "64"], f"--size 64: echofm-tiny-phantom takes {contract.image_size} px"),
                         (["--fps", "30"], f"--fps 30: echofm-tiny-phantom was pretrained on clips at {contract.fps:g} fps")):
        cfg = demo_command.build_config(parser.parse_args(["demo", "--quick", "--out", str(tmp_path / "o"), *flags]))
        with pytest.raises(ValueError, match=words):
            demo.run_demo(cfg, say=lambda line: None)
        assert not (tmp_path / "o").exists()  # refused before anything was written
    cfg = demo_command.build_config(parser.parse_args(["demo", "--quick", "--init", "echofm-tiny"]))
    with pytest.raises(ValueError, match="states no frame rate"):
        demo.run_demo(replace(cfg, out=str(tmp_path / "o")), say=lambda line: None)


def test_printed_tables_match_the_json(quick_demo):
    lines = quick_demo.stdout.splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("task ") and "verdict" in line)
    rows = quick_demo.summary["comparison"]
    for row, line in zip(rows, lines[header + 1:header + 1 + len(rows)]):
        fields = line.split()
        assert fields[:5] == [row["task"], row["mode"], row["metric"], str(row["k"]), row["heldout"]], line
        assert float(fields[5]) == pytest.approx(row["pretrained_mean"], abs=6e-4)
        assert float(fields[6]) == pytest.approx(row["random_mean"], abs=6e-4)
        lo, hi = line.split("[")[1].split("]")[0].split(",")
        assert (float(lo), float(hi)) == pytest.approx(tuple(row["gain_ci95"]), abs=6e-4)
        assert line.rstrip().endswith(row["verdict"])
    header = max(i for i, line in enumerate(lines) if line.startswith("figure ") and "pretrained" in line)
    body = lines[header + 1:header + 1 + len(quick_demo.summary["table"])]
    for row, line in zip(quick_demo.summary["table"], body):
        assert line.startswith(row["figure"] + " "), (row["figure"], line)
        fields = line[len(row["figure"]):].split()
        assert float(fields[0]) == pytest.approx(row["pretrained"], abs=6e-4)
        assert float(fields[1]) == pytest.approx(row["random"], abs=6e-4)
        if row["reference"] is not None:
            assert float(fields[2]) == pytest.approx(row["reference"], abs=6e-4)


def test_phantom_data_is_deidentified_and_held_out(quick_demo):
    data = quick_demo.summary["data"]
    cfg = quick_demo.summary["config"]
    assert data["train"]["phantoms"] == data["train"]["prepared"] == cfg["clips"]
    assert data["test"]["phantoms"] == data["test"]["prepared"] == cfg["test_clips"]
    assert data["identifiers_in_cache"] == 0 and data["shared_phantom_seeds"] == 0
    # The check really looks: the DICOMs do carry the identifiers it searches for.
    truth = (quick_demo.out / "phantoms" / "train" / "phantom_truth.jsonl").read_text().splitlines()
    name = json.loads(truth[0])["identifiers"]["PatientID"]
    assert name.encode() in (quick_demo.out / "phantoms" / "train" / "IMG00001.dcm").read_bytes()


def test_real_cine_phase_is_measured(quick_demo):
    real = quick_demo.summary["real_a4c"]
    assert real["available"] and real["fps"] == pytest.approx(30.0, abs=0.1)
    assert 40 <= real["heart_rate_bpm"] <= 150 and real["cycle_frames"] > 0
    assert real["ed_frames"] and real["es_frames"]
    assert f"heart rate {real['heart_rate_bpm']:.3f} bpm" in quick_demo.stdout


def test_random_arm_is_the_weights_pretraining_started_from(tmp_path):
    from echofm.model import load_model

    run = tmp_path / "run"
    rc = main(["pretrain", "--config", "echofm-tiny", "--data", "synth:2", "--out", str(run), "--steps", "1",
               "--batch-size", "2", "--lr", "1e-30", "--weight-decay", "0", "--set", "model.img_size=32",
               "--workers", "0", "--checkpoint-every", "0", "--seed", "7", "--no-progress"])
    assert rc == 0
    trained = load_model(run / "model")
    from echofm.experiments.label_efficiency import random_arm

    start = random_arm(trained, 7)
    other = random_arm(trained, 8)
    assert start.contract == trained.contract  # both arms read the same windows
    for (name, a), b, c in zip(trained.state_dict().items(), start.state_dict().values(), other.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert any(not torch.allclose(a, c) for a, c in zip(start.state_dict().values(), other.state_dict().values()))


def test_out_folder_is_cleared_only_when_a_demo_wrote_it(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not written by `echofm demo`"):
        demo.prepare_out(foreign)
    assert (foreign / "thesis.txt").read_text() == "keep me"
    previous = tmp_path / "previous"
    demo.prepare_out(previous)
    (previous / "pretrain").mkdir()
    (previous / "pretrain" / "old.txt").write_text("old")
    (previous / "notes.txt").write_text("user file")
    demo.prepare_out(previous)
    assert not (previous / "pretrain").exists() and (previous / "notes.txt").exists()


def test_options_have_help_and_quick_keeps_explicit_sizes():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["demo"]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert {"out", "seed", "init", "pretrain", "clips", "test_clips", "steps", "size", "quick"} <= {a.dest for a in options}
    assert all(a.help and len(a.help) > 10 for a in options)
    args = parser.parse_args(["demo", "--quick", "--steps", "9"])
    cfg = demo_command.build_config(args)
    assert cfg.steps == 9 and cfg.clips == demo.QUICK["clips"] and cfg.size is None  # None: the model's
    full = demo_command.build_config(parser.parse_args(["demo"]))
    assert full.steps == demo.DemoConfig().steps
    with pytest.raises(ValueError, match="multiple of 16"):
        demo_command.build_config(parser.parse_args(["demo", "--size", "72"]))


def test_deid_audit_counts_identifiers_in_text_files_only(tmp_path):
    from echofm.experiments.deid_audit import count_identifiers, identifier_strings

    truth = {"IMG00001": {"identifiers": {"PatientName": "DOE^JANEY", "PatientID": "PX123456"}}}
    idents = identifier_strings(truth)
    assert {"DOE^JANEY", "JANEY", "PX123456"} <= idents and "DOE" not in idents  # parts under 4 letters are too common
    (tmp_path / "clips").mkdir()
    (tmp_path / "manifest.csv").write_text("id,source\nabc,IMG00001.dcm\n")
    assert count_identifiers(tmp_path, idents) == 0
    (tmp_path / "failures.csv").write_text("id,reason\nabc,cannot read JANEY's file PX123456\n")
    (tmp_path / "clips" / "abc.npy").write_bytes(b"PX123456")  # arrays are not text a person reads
    assert count_identifiers(tmp_path, idents) == 2
