"""Every command end to end on a small phantom set, through `echofm.cli.main` as a user runs it.

One module-scoped pipeline (synth -> prepare -> a few pretraining steps) is shared; each
test then runs one command on its outputs. Finetune/evaluate/predict have their own
end-to-end tests (test_tasks_end_to_end.py, test_tasks_segmentation.py, test_predict.py).
"""

from __future__ import annotations

import csv
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from echofm.batch import input_id
from echofm.cli import build_parser, main

CLIPS, FRAMES, RAW_SIZE, MODEL_SIZE, STEPS = 6, 48, 112, 64, 3


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class _Page(HTMLParser):
    """Collects tags and every src/href of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags, self.links = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href")]


def _check_page(page: Path) -> _Page:
    parsed = _Page()
    parsed.feed(page.read_text(encoding="utf-8"))
    parsed.close()
    assert parsed.links, f"{page}: links nothing"
    missing = [link for link in parsed.links if not (page.parent / link).is_file()]
    assert not missing, f"{page}: links missing files {missing}"
    return parsed


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    assert main(["synth", "--out", str(root / "raw"), "--format", "folder", "--n", str(CLIPS), "--size", str(RAW_SIZE),
                 "--frames", str(FRAMES), "--seed", "3", "--no-progress"]) == 0
    assert main(["prepare", str(root / "raw"), "--out", str(root / "cache"), "--size", str(MODEL_SIZE),
                 "--workers", "1", "--quiet"]) == 0
    assert main(["pretrain", "--config", "echofm-tiny", "--set", f"model.img_size={MODEL_SIZE}", "--data",
                 str(root / "cache"), "--out", str(root / "pre"), "--steps", str(STEPS), "--batch-size", "4",
                 "--workers", "0", "--checkpoint-every", "0", "--no-augment", "--lr", "5e-4", "--no-progress"]) == 0
    return root


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"synth", "prepare", "pretrain", "embed", "predict", "phase", "reconstruct", "diagnose", "report", "info",
            "convert", "finetune", "evaluate"} <= set(commands)
    for name, sub in commands.items():
        undocumented = [a.dest for a in sub._actions if a.dest != "help" and not (a.help or "").strip()]
        assert not undocumented, f"echofm {name}: options without help: {undocumented}"


def test_synth_and_prepare_write_the_cache(pipeline):
    labels = _rows(pipeline / "raw" / "labels.csv")
    assert len(labels) == CLIPS and all((pipeline / "raw" / r["filename"]).is_file() for r in labels)
    manifest = _rows(pipeline / "cache" / "manifest.csv")
    assert len(manifest) == CLIPS and not _rows(pipeline / "cache" / "failures.csv")
    for row in manifest:
        clip = np.load(pipeline / "cache" / row["file"], mmap_mode="r")
        assert clip.dtype == np.uint8 and clip.shape == (FRAMES, MODEL_SIZE, MODEL_SIZE)
        assert float(row["fps"]) == pytest.approx(30.0)


def test_pretrain_logs_each_step_and_exports_a_model(pipeline):
    from echofm.model import load_model

    rows = [json.loads(x) for x in (pipeline / "pre" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["recon"]) for r in steps)
    model = load_model(pipeline / "pre" / "model")
    assert model.cfg.img_size == MODEL_SIZE and model.load_report.layout != "preset"


def test_info_and_convert_round_trip(pipeline, tmp_path, capsys):
    from echofm.model import load_model

    assert main(["info", str(pipeline / "pre" / "model")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["img_size"] == MODEL_SIZE and info["parameters"]["total"] > 0
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert info["contract"]["fps"] == pytest.approx(7.5) and info["contract"]["frame_step"] == 4
    assert main(["convert", str(pipeline / "pre" / "model"), "--to", "public", "--out", str(tmp_path / "pub.pth")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "pub.pth")]) == 0
    public = json.loads(capsys.readouterr().out)
    assert public["parameters"] == info["parameters"]
    # The public layout has no contract: it gets the public code's convention (every frame, unmasked).
    assert public["contract"]["fps"] is None and public["contract"]["mask_sector"] is False
    assert main(["convert", str(tmp_path / "pub.pth"), "--out", str(tmp_path / "back")]) == 0
    a = load_model(pipeline / "pre" / "model").state_dict()
    b = load_model(tmp_path / "back").state_dict()
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_embed_shapes_resume_and_failures(pipeline, tmp_path, capsys):
    from echofm.model import load_model

    model = load_model(pipeline / "pre" / "model")
    cfg = model.cfg
    # Pretrained on the 30 fps cache every 4th frame (the default): its contract says 7.5 fps.
    assert model.contract.fps == pytest.approx(7.5) and model.contract.frame_step == 4
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("clip_00000.mp4", "clip_00001.mp4", "clip_00002.mp4"):
        shutil.copy(pipeline / "raw" / name, inputs / name)
    (inputs / "corrupt.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI " + b"\x01" * 300)
    out = tmp_path / "emb"
    argv = ["embed", str(inputs), "--model", str(pipeline / "pre" / "model"), "--out", str(out), "--tokens", "--quiet"]
    assert main(argv) == 1  # corrupt.avi failed: the exit status says so
    assert _last_json(capsys)["done"] == 3
    failures = _rows(out / "failures.csv")
    assert [f["id"] for f in failures] == [input_id(inputs / "corrupt.avi")]
    assert str(tmp_path) not in failures[0]["reason"] and "corrupt.avi" not in failures[0]["reason"]
    assert {row["id"] for row in _rows(out / "index.csv")} == {input_id(inputs / f"clip_0000{i}.mp4") for i in range(3)}
    index = _rows(out / "index.csv")
    assert len(index) == 3
    steps, spatial = cfg.num_frames // cfg.t_patch_size, (cfg.img_size // cfg.patch_size) ** 2
    for row in index:
        windows = int(row["windows"])
        # The 30 fps inputs are read every 4th frame: 16 frames span 61 > 48, one window.
        assert windows == len(row["window_starts"].split()) == 1 and row["frame_step"] == "4"
        assert np.load(out / f"{row['id']}_video.npy").shape == (cfg.embed_dim,)
        assert np.load(out / f"{row['id']}_frames.npy").shape == (windows, steps, cfg.embed_dim)
        assert np.load(out / f"{row['id']}_tokens.npy").shape == (windows, steps * spatial, cfg.embed_dim)
        assert int(row["dim"]) == cfg.embed_dim and int(row["frames"]) == FRAMES and row["tokens"] == "1"
    # A second run does no work (and still reports the input that failed before).
    assert main(argv) == 1
    assert _last_json(capsys) == {"done": 0, "skipped": 4, "failed": 1, "index": str(out / "index.csv"),
                                  "failures": str(out / "failures.csv")}
    # Only the input whose output was deleted is recomputed (to the same values); the
    # other inputs' files are left alone.
    lost = out / f"{index[1]['id']}_frames.npy"
    before = np.load(lost)
    others = {p: p.stat().st_mtime_ns for p in out.glob("*.npy") if not p.name.startswith(index[1]["id"])}
    assert len(others) == 6
    lost.unlink()
    assert main(argv + ["--allow-failures"]) == 0
    assert _last_json(capsys)["done"] == 1
    assert np.allclose(np.load(lost), before, atol=1e-6)
    assert {p: p.stat().st_mtime_ns for p in others} == others
    assert len(_rows(out / "index.csv")) == 3
    # Another model (or frame step) into the same folder is refused rather than mixed in.
    other = [a if a != str(pipeline / "pre" / "model") else "echofm-tiny" for a in argv]
    assert main(other) == 2
    assert "different model or settings" in capsys.readouterr().err
    assert main(argv + ["--frame-step", "2"]) == 2
    assert main(argv + ["--stride", "2"]) == 2  # the old name still works, and says it is deprecated
    assert "--stride is deprecated" in capsys.readouterr().err
    # A frame step given by hand overrides the contract: every frame, 3 windows of 16.
    assert main(["embed", str(inputs), "--model", str(pipeline / "pre" / "model"), "--out", str(tmp_path / "e1"),
                 "--frame-step", "1", "--quiet", "--allow-failures"]) == 0  # corrupt.avi still fails
    assert [r["windows"] for r in _rows(tmp_path / "e1" / "index.csv")] == ["3"] * 3


def test_phase_finds_ed_es_of_phantom_files(pipeline, tmp_path, capsys):
    labels = _rows(pipeline / "raw" / "labels.csv")[:4]
    good = 0
    for row in labels:
        out = tmp_path / row["filename"]
        assert main(["phase", str(pipeline / "raw" / row["filename"]), "--out", str(out)]) == 0
        result = json.loads((out / "phase.json").read_text())
        assert result["fps"] == pytest.approx(30.0) and result["frames"] == FRAMES
        assert (out / result["figure"]).stat().st_size > 1000
        found = result["pixels"]
        hits = [min((abs(p - t) for p in found[key]), default=99) <= 1
                for key, column in (("ed_frames", "ed_frames"), ("es_frames", "es_frames"))
                for t in map(int, row[column].split())]
        good += np.mean(hits) >= 0.5
        true_cycle = 60.0 * 30.0 / float(row["heart_rate"])
        assert found["heart_rate_bpm"] is None or found["heart_rate_bpm"] == pytest.approx(
            60.0 * 30.0 / found["cycle_frames"])
        if found["cycle_frames"]:
            assert abs(found["cycle_frames"] - true_cycle) < 0.25 * true_cycle
    capsys.readouterr()
    assert good >= 3, f"ED/ES within one frame on {good} of {len(labels)} clips"
    # With a model the cycle is also read from the per-time-step embeddings. The model took
    # every 4th frame in training, so 48 frames are less than the two windows' span (128) the
    # embedding reading needs: no cycle, and the note says so. At --frame-step 1 (32) it reads.
    source, model = str(pipeline / "raw" / labels[0]["filename"]), str(pipeline / "pre" / "model")
    assert main(["phase", source, "--model", model, "--out", str(tmp_path / "with_model")]) == 0
    result = json.loads((tmp_path / "with_model" / "phase.json").read_text())
    assert result["embeddings"]["frame_step"] == 4 and result["embeddings"]["cycle_frames"] is None
    assert "two model windows' span (128 frames" in result["note"]
    assert main(["phase", source, "--model", model, "--out", str(tmp_path / "every"), "--frame-step", "1"]) == 0
    result = json.loads((tmp_path / "every" / "phase.json").read_text())
    assert result["embeddings"]["source"] == "embeddings" and len(result["embeddings"]["lag_profile"]) > 2


def test_reconstruct_writes_figure_gif_and_psnr(pipeline, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "rec"
    assert main(["reconstruct", str(pipeline / "raw" / "clip_00003.mp4"), "--model", str(pipeline / "pre" / "model"),
                 "--out", str(out)]) == 0
    printed = _last_json(capsys)
    saved = json.loads((out / "reconstruction.json").read_text())
    assert printed == saved
    assert np.isfinite(saved["psnr_masked_db"]) and saved["psnr_masked_db"] > 0
    assert np.isfinite(saved["psnr_flat_patch_baseline_db"]) and saved["mask_ratio"] == 0.75
    assert (out / saved["figure"]).stat().st_size > 1000
    with Image.open(out / saved["gif"]) as gif:
        assert gif.n_frames > 1 and gif.size[0] > gif.size[1]  # input | masked | reconstruction side by side


def test_diagnose_on_phantom_files_and_on_the_cache(pipeline, tmp_path, capsys):
    out = tmp_path / "diag"
    assert main(["diagnose", "--model", str(pipeline / "pre" / "model"), "--data", str(pipeline / "raw"),
                 "--out", str(out), "--max-windows", "2", "--examples", "2", "--quiet"]) == 0
    printed = _last_json(capsys)
    result = json.loads((out / "diagnose.json").read_text())
    assert printed["clips"] == result["summary"]["clips"] == len(result["clips"]) == CLIPS
    for row in result["clips"]:
        assert row["period_source"] == "truth"  # heart_rate and fps of labels.csv
        assert -2 <= row["phase_contrast"] <= 2 and -2 <= row["pixel_phase_contrast"] <= 2
        assert -1 <= row["similarity_correlation"] <= 1
    for name in ("phase_contrast", "similarity_correlation"):
        values = [r[name] for r in result["clips"]]
        assert result["summary"][name]["median"] == pytest.approx(float(np.median(values)))
    assert [r["id"] for r in _rows(out / "diagnose.csv")] == [r["id"] for r in result["clips"]]
    assert len(result["figures"]) == 3 and all((out / f).is_file() for f in result["figures"])
    page = _check_page(out / "report.html")
    assert "table" in page.tags and all(figure in page.links for figure in result["figures"])
    assert {f"maps/{r['id']}.png" for r in result["clips"]} >= set(result["figures"][1:])  # one map per example clip
    # A prepared cache carries no truth: the period comes from the pixels. A random encoder works too.
    out = tmp_path / "diag_cache"
    assert main(["diagnose", "--model", "echofm-tiny", "--data", str(pipeline / "cache"), "--out", str(out),
                 "--max-windows", "1", "--examples", "1", "--quiet"]) == 0
    capsys.readouterr()
    rows = json.loads((out / "diagnose.json").read_text())["clips"]
    assert len(rows) == CLIPS and {r["period_source"] for r in rows} <= {"pixels", "none"}
    assert all(r["fps"] == pytest.approx(30.0) for r in rows)  # from the cache's manifest.csv
    assert all(r["similarity_correlation"] is None or -1 <= r["similarity_correlation"] <= 1 for r in rows)


def test_report_of_the_pretraining_run(pipeline, tmp_path, capsys):
    run = tmp_path / "pre"
    shutil.copytree(pipeline / "pre", run)
    assert main(["report", str(run), "--title", "tiny run"]) == 0
    page = Path(capsys.readouterr().out.strip())
    assert page == run / "report.html"
    parsed = _check_page(page)
    assert "report_curves.png" in parsed.links and "img" in parsed.tags
    assert "<title>tiny run</title>" in page.read_text()
