"""The batch-job helper and the four batch commands on real files: IDs, resume, failures, exit status.

The source folder's path holds a fake patient name and birth date, as archive paths do;
no output, printed line or log record may carry it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echofm.batch import (BatchJob, BatchOptions, EXIT_FAILED, failure_reason, input_id, scan_sources,
                          scrub_paths)
from echofm.cli import main
from echofm.errors import ClipReadError, EchoFMError
from tests._downstream import beating_disc, save_tiny_model, write_avi

PATIENT = "DOE^JANE 19610412"
NOT_DICOM = "not a DICOM file (no DICM preamble and no readable DICOM header)"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def archive(tmp_path_factory, ybr_cine) -> Path:
    """SRC = <tmp>/DOE^JANE 19610412/echo: two good clips and three broken files."""
    src = tmp_path_factory.mktemp("archive") / PATIENT / "echo"
    (src / "series").mkdir(parents=True)
    write_avi(src / "good.avi", beating_disc(16, 32, ef=60, seed=1))
    write_avi(src / "series" / "other.avi", beating_disc(16, 32, ef=40, seed=2))
    data = ybr_cine.read_bytes()
    (src / "cut5000.dcm").write_bytes(data[:5000])
    (src / "series" / "cut70.dcm").write_bytes(data[:int(len(data) * 0.7)])
    (src / "y.dcm").write_text("Jane Doe, echo lab list\n")
    return src


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


BAD = {"cut5000.dcm": "truncated DICOM: file ends after 5,000 bytes, inside the header (before the pixel data)",
       "series/cut70.dcm": "truncated DICOM: pixel data ends after ",
       "y.dcm": NOT_DICOM}


def _check_failures(out: Path, archive: Path, keep_paths: bool = False) -> None:
    failures = {row["id"]: row for row in _rows(out / "failures.csv")}
    assert set(failures) == {input_id(archive / name) for name in BAD}
    for name, reason in BAD.items():
        row = failures[input_id(archive / name)]
        assert row["reason"].startswith(reason), row
        assert row.get("source") == (name if keep_paths else None)


def _no_patient_anywhere(out: Path, *printed: str) -> None:
    for text in printed:
        assert "DOE" not in text and "19610412" not in text, text
    for path in out.rglob("*"):
        assert "DOE" not in path.name
        if path.is_file() and path.suffix in (".csv", ".json", ".html", ".txt"):
            text = path.read_text(errors="replace")
            assert "DOE" not in text and "19610412" not in text, path


# --- the helper on its own ------------------------------------------------------------------

def test_input_id_is_the_hash_of_the_file_bytes(archive, tmp_path):
    good = archive / "good.avi"
    ident = input_id(good)
    assert ident == hashlib.blake2b(good.read_bytes(), digest_size=16).hexdigest() and len(ident) == 32
    if shutil.which("b2sum"):  # the documented way for a user to find which file an ID names
        assert subprocess.run(["b2sum", "-l", "128", str(good)], capture_output=True, text=True,
                              check=True).stdout.split()[0] == ident
    copy = tmp_path / "elsewhere" / "renamed.avi"
    copy.parent.mkdir()
    shutil.copy(good, copy)
    assert input_id(copy) == ident  # no name or place in it
    assert input_id(archive / "y.dcm") != ident
    # A clip of a prepared cache keeps the ID its cache gave it.
    clip = tmp_path / "cache" / "clips" / f"{ident}.npy"
    clip.parent.mkdir(parents=True)
    np.save(clip, np.zeros((2, 4, 4), np.uint8))
    assert input_id(clip) != ident
    (tmp_path / "cache" / "manifest.csv").write_text("id,file\n")
    assert input_id(clip) == ident


def test_reasons_lose_every_absolute_path(archive):
    source = scan_sources([archive / "y.dcm"])[0]
    cut = archive / "cut5000.dcm"
    text = f"cannot open {source.path} nor {source.path.resolve()}; see {cut} and /var/tmp/{PATIENT}/x.log"
    scrubbed = scrub_paths(text, source)
    assert "DOE" not in scrubbed and "/var" not in scrubbed and str(archive) not in scrubbed
    assert scrubbed.startswith("cannot open <input> nor <input>; see <src>/cut5000.dcm")
    assert scrub_paths(text, source, keep_paths=True).startswith("cannot open y.dcm nor y.dcm")
    assert "frames/s" in scrub_paths("3 frames/s, 1/2 done")  # no false positives on ordinary slashes
    # A ClipReadError gives its reason without the path; other errors keep their type.
    assert failure_reason(ClipReadError(source.path, NOT_DICOM), source) == NOT_DICOM
    reason = failure_reason(OSError(f"[Errno 5] I/O error: '{source.path}'"), source)
    assert reason == "OSError: [Errno 5] I/O error: '<input>'"


def _square_job(src: Path, out: Path, settings: dict, **options) -> BatchJob:
    """A toy job: each .npy input's squares, one output file per input."""
    job = BatchJob("square", out, settings, BatchOptions(progress=False, **options)).open()
    for item in job.run(job.pending(scan_sources([src]))):
        try:
            values = np.load(item.source.path)
            if values.dtype != np.int64:
                raise ValueError(f"{item.source.path}: need int64 values, got {values.dtype}")
        except ValueError as exc:
            job.failed(item, exc)
            continue
        np.save(out / f"{item.id}.npy", values ** 2)
        job.done(item, {"n": len(values)}, [f"{item.id}.npy"])
    job.finish()
    return job


def test_job_resumes_retries_refuses_and_reports(tmp_path):
    src, out = tmp_path / PATIENT, tmp_path / "out"
    src.mkdir()
    for i in range(3):
        np.save(src / f"ok{i}.npy", np.arange(i + 2, dtype=np.int64))
    np.save(src / "bad.npy", np.ones(3, np.float32))
    first = _square_job(src, out, {"power": 2}).summary
    assert (first.done, first.skipped, first.failed, first.exit_status) == (3, 0, 1, EXIT_FAILED)
    assert first.line() == f"echofm square: 3 done, 0 skipped (finished before), 1 failed; reasons in {out / 'failures.csv'}"
    assert [row["id"] for row in _rows(out / "index.csv")] == sorted(input_id(src / f"ok{i}.npy") for i in range(3))
    assert _rows(out / "failures.csv") == [{"id": input_id(src / "bad.npy"),
                                            "reason": "ValueError: <input>: need int64 values, got float32"}]
    # A re-run does nothing, yet the failure still counts; a lost output is redone.
    (out / f"{input_id(src / 'ok1.npy')}.npy").unlink()
    again = _square_job(src, out, {"power": 2}).summary
    assert (again.done, again.skipped, again.failed, again.failed_before) == (1, 3, 0, 1)
    assert again.exit_status == EXIT_FAILED and "1 in an earlier run" in again.line()
    assert _square_job(src, out, {"power": 2}, allow_failures=True).summary.exit_status == 0
    # Fixed and retried: nothing failed any more, and failures.csv says so.
    np.save(src / "bad.npy", np.ones(3, np.int64))
    fixed = _square_job(src, out, {"power": 2}, retry_failed=True, keep_paths=True).summary
    assert (fixed.done, fixed.failed, fixed.exit_status) == (1, 0, 0)
    assert _rows(out / "failures.csv") == [] and len(_rows(out / "index.csv")) == 4
    assert {r["source"] for r in _rows(out / "index.csv")} >= {"bad.npy"}
    # Other settings into the same folder are refused, naming what changed.
    with pytest.raises(EchoFMError, match=r"different model or settings \(power changed\)"):
        _square_job(src, out, {"power": 3})
    _no_patient_anywhere(out)


# --- the commands ---------------------------------------------------------------------------

def _run(capsys, argv) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prepare_embed_and_diagnose_tell_the_truth_and_share_ids(archive, tiny_model, tmp_path, capsys, caplog):
    outs = {name: tmp_path / name for name in ("prepare", "embed", "diagnose")}
    runs = {
        "prepare": ["prepare", str(archive), "--out", str(outs["prepare"]), "--size", "32", "--workers", "1"],
        "embed": ["embed", str(archive), "--model", str(tiny_model), "--out", str(outs["embed"])],
        "diagnose": ["diagnose", "--data", str(archive), "--model", str(tiny_model), "--out", str(outs["diagnose"]),
                     "--max-windows", "1", "--examples", "1"],
    }
    indexes = {"prepare": "manifest.csv", "embed": "index.csv", "diagnose": "diagnose.csv"}
    good = {input_id(archive / "good.avi"), input_id(archive / "series" / "other.avi")}
    for name, argv in runs.items():
        code, out, err = _run(capsys, argv + ["--quiet"])
        assert code == 1, (name, err)
        failures = outs[name] / "failures.csv"
        assert err.strip().splitlines()[-1] == (f"echofm {name}: 2 done, 0 skipped (finished before), 3 failed; "
                                                f"reasons in {failures}")
        assert json.loads(out.strip().splitlines()[-1])["failed"] == 3
        _check_failures(outs[name], archive)
        assert {row["id"] for row in _rows(outs[name] / indexes[name])} == good  # one ID per file, every job
        _no_patient_anywhere(outs[name], out, err, caplog.text)
        # Failures allowed: the same report, exit status 0.
        code, _, err = _run(capsys, argv + ["--quiet", "--allow-failures"])
        assert code == 0 and err.strip().splitlines()[-1].endswith(
            "(allowed by --allow-failures); reasons in " + str(failures))
    # With --keep-paths (a fresh folder) the paths relative to SRC appear, and only those.
    code, out, err = _run(capsys, runs["prepare"][:3] + [str(tmp_path / "kept"), "--size", "32", "--workers", "1",
                                                         "--quiet", "--keep-paths"])
    assert code == 1
    _check_failures(tmp_path / "kept", archive, keep_paths=True)
    assert {r["source"] for r in _rows(tmp_path / "kept" / "manifest.csv")} == {"good.avi", "series/other.avi"}
    _no_patient_anywhere(tmp_path / "kept", out, err)
    # Embedding the prepared cache gives the original files' IDs.
    code, _, _ = _run(capsys, ["embed", str(outs["prepare"] / "clips"), "--model", str(tiny_model),
                               "--out", str(tmp_path / "embed_cache"), "--quiet"])
    assert code == 0 and {r["id"] for r in _rows(tmp_path / "embed_cache" / "index.csv")} == good


@pytest.mark.parametrize("command", ["prepare", "embed", "predict", "diagnose"])
def test_missing_input_leaves_no_output_folder(command, tiny_model, tmp_path, capsys):
    missing, out = tmp_path / "nonexistent" / "file.dcm", tmp_path / "out"
    argv = {"prepare": ["prepare", str(missing)], "embed": ["embed", str(missing), "--model", str(tiny_model)],
            "predict": ["predict", str(missing), "--model", str(tmp_path / "no_run")],
            "diagnose": ["diagnose", "--data", str(missing), "--model", str(tiny_model)]}[command]
    code, _, err = _run(capsys, argv + ["--out", str(out), "--quiet"])
    assert code == 2 and not out.exists()
    assert f"{missing}: no such file or folder" in err


def test_rebuilding_a_folder_that_is_not_one_creates_nothing(tmp_path, capsys):
    code, _, err = _run(capsys, ["prepare", "--out", str(tmp_path / "typo")])
    assert code == 2 and not (tmp_path / "typo").exists() and "not a prepared folder" in err


def test_a_user_sees_one_clear_last_line(archive, tmp_path):
    """The real command line: no pydicom jargon, no absolute path, the last line of stderr says it all."""
    out = tmp_path / "p"
    done = subprocess.run([sys.executable, "-m", "echofm", "prepare", str(archive / "y.dcm"),
                           str(archive / "cut5000.dcm"), "--out", str(out), "--size", "32", "--workers", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (f"echofm prepare: 0 done, 0 skipped (finished before), "
                                                    f"2 failed; reasons in {out / 'failures.csv'}")
    assert "force=True" not in done.stderr + done.stdout and "DOE" not in done.stderr + done.stdout
    assert NOT_DICOM in done.stderr  # each failure is logged as it happens, by ID
