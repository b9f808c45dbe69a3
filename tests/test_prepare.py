"""`echofm prepare` end to end on real DICOM, a re-encoded video and broken files."""

import csv
import shutil

import av
import numpy as np
import pydicom
import pytest

from echofm.batch import BatchOptions, input_id, scan_sources
from echofm.cli import main
from echofm.io import read_clip
from echofm.io.dicom import ALLOWED_META
from echofm.preprocess.prepare import prepare

TEXT_VRS = {"PN", "LO", "SH", "DA", "TM", "DT", "UI", "LT", "ST", "UT", "AE", "UC", "AS"}


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_mp4(frames, path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def archive(tmp_path_factory, ybr_cine, lossless_still, deid_cine, color3d_cine):
    """A small archive: 3 good DICOMs (one extension-less, in a sub-folder), a duplicate,
    an MP4, a truncated copy and a random-bytes .dcm."""
    root = tmp_path_factory.mktemp("archive")
    (root / "study" / "series").mkdir(parents=True)
    shutil.copy(ybr_cine, root / "ybr.dcm")
    shutil.copy(lossless_still, root / "still.dcm")
    shutil.copy(deid_cine, root / "study" / "series" / "IM0001")
    shutil.copy(deid_cine, root / "study" / "duplicate.dcm")
    _write_mp4(read_clip(ybr_cine).frames[:12], root / "study" / "cine.mp4")
    (root / "study" / "truncated.dcm").write_bytes(color3d_cine.read_bytes()[:150_000])
    (root / "random.dcm").write_bytes(np.random.default_rng(1).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    (root / "notes.txt").write_text("not an echo")
    return root


@pytest.fixture(scope="module")
def prepared(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    code = main(["prepare", str(archive), "--out", str(out), "--workers", "2", "--quiet"])
    assert code == 1  # two inputs failed: the exit status says so
    return out


def test_good_inputs_prepared_bad_ones_listed(prepared, archive):
    manifest = _read_csv(prepared / "manifest.csv")
    failures = {row["id"]: row["reason"] for row in _read_csv(prepared / "failures.csv")}
    truncated, random = input_id(archive / "study" / "truncated.dcm"), input_id(archive / "random.dcm")
    assert set(failures) == {truncated, random}
    assert failures[truncated].startswith("truncated DICOM: pixel data ends after ")
    assert failures[random] == "not a DICOM file (no DICM preamble and no readable DICOM header)"
    assert "source" not in _read_csv(prepared / "failures.csv")[0]  # paths only with --keep-paths
    # ybr, still, mp4 and the deid cine (its duplicate collapses onto the same id)
    assert len(manifest) == 4
    by_kind = sorted((row["source_kind"], row["is_still"]) for row in manifest)
    assert by_kind == [("dicom", "0"), ("dicom", "0"), ("dicom", "1"), ("video", "0")]
    for row in manifest:
        clip = np.load(prepared / row["file"], mmap_mode="r")
        assert clip.dtype == np.uint8 and clip.shape == (int(row["frames"]), 224, 224)
        assert row["file"] == f"clips/{row['id']}.npy"
    # The ID is the hash of the input file's bytes: the duplicate and its original share one.
    assert input_id(archive / "study" / "duplicate.dcm") == input_id(archive / "study" / "series" / "IM0001")
    assert {row["id"] for row in manifest} == {input_id(archive / name) for name in
                                               ("ybr.dcm", "still.dcm", "study/cine.mp4", "study/duplicate.dcm")}
    fps = sorted(float(row["fps"]) for row in manifest if row["fps"])
    assert fps == pytest.approx([18.436, 30.0, 30.0], abs=0.01)
    assert "source" not in manifest[0]


def test_no_header_value_outside_allow_list_reaches_outputs(prepared, archive):
    forbidden = set()
    for path in [archive / "ybr.dcm", archive / "still.dcm", archive / "study" / "series" / "IM0001"]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for element in ds.iterall():
            if element.VR in TEXT_VRS and element.keyword not in ALLOWED_META and element.value:
                values = element.value if element.VM > 1 else [element.value]
                forbidden |= {str(v).strip() for v in values if len(str(v).strip()) >= 4}
        forbidden |= {str(ds.PatientName), str(ds.get("StudyDate", ""))} - {""}
    assert "abcd" in forbidden and "20220930" in forbidden  # the deid cine's name and date
    texts = {p.relative_to(prepared).as_posix(): p.read_text(errors="ignore")
             for p in prepared.rglob("*") if p.is_file() and p.suffix != ".npy"}
    names = " ".join(p.name for p in prepared.rglob("*"))
    leaks = {value for value in forbidden
             if value in names or any(value in text for text in texts.values())}
    assert not leaks, f"header values leaked into outputs: {sorted(leaks)[:5]}"
    manifest = (prepared / "manifest.csv").read_text()
    assert "Affiniti 70G" in manifest  # the allow-listed model does get through


def test_rerun_does_no_work(prepared, archive):
    before = {p: p.stat().st_mtime_ns for p in (prepared / "clips").iterdir()}
    result = prepare([archive], prepared, workers=1, options=BatchOptions(progress=False))
    assert (result.done, result.failed, result.skipped, result.failed_before) == (0, 0, 7, 2)
    assert result.exit_status == 1  # the two failed inputs are still failed
    assert {p: p.stat().st_mtime_ns for p in (prepared / "clips").iterdir()} == before


def test_lost_clip_and_stale_temp_are_not_trusted(prepared, archive):
    rows = _read_csv(prepared / "manifest.csv")
    victim = prepared / rows[0]["file"]
    victim.unlink()  # as if the disk lost it, or the rename never happened
    stale = prepared / "clips" / ".half-written.npy.x1y2.tmp"
    stale.write_bytes(b"\x93NUMPY partial")
    result = prepare([archive], prepared, workers=1, options=BatchOptions(progress=False))
    assert result.done >= 1 and victim.is_file() and not stale.exists()
    assert len(_read_csv(prepared / "manifest.csv")) == len(rows)


def test_failures_set_the_exit_status_and_keep_paths(archive, tmp_path, capsys):
    out = tmp_path / "strict"
    sources = [str(archive / "random.dcm"), str(archive / "ybr.dcm")]
    assert main(["prepare", *sources, "--out", str(out), "--quiet", "--workers", "1",
                 "--keep-paths", "--size", "112"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"echofm prepare: 1 done, 0 skipped (finished before), 1 failed; "
                    f"reasons in {out / 'failures.csv'}")
    rows = _read_csv(out / "manifest.csv")
    assert len(rows) == 1 and rows[0]["source"] == "ybr.dcm" and rows[0]["height"] == "112"
    assert _read_csv(out / "failures.csv") == [{"id": input_id(archive / "random.dcm"), "source": "random.dcm",
                                                "reason": "not a DICOM file (no DICM preamble and no readable "
                                                          "DICOM header)"}]
    # --allow-failures: the same truth in the tables and the last line, exit status 0
    assert main(["prepare", *sources, "--out", str(out), "--quiet", "--size", "112", "--allow-failures"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"1 failed (1 in an earlier run; --retry-failed tries again) (allowed by --allow-failures); "
        f"reasons in {out / 'failures.csv'}")
    # the same folder refuses another configuration rather than mixing clips
    assert main(["prepare", sources[1], "--out", str(out), "--quiet", "--size", "224"]) == 2


def test_shards_cover_every_input_exactly_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        np.save(src / f"clip{i:02d}.npy", rng.integers(0, 255, (3, 16, 16), dtype=np.uint8))
    ids = []
    for shard in ("0/2", "1/2"):
        out = tmp_path / shard.replace("/", "of")
        assert main(["prepare", str(src), "--out", str(out), "--shard", shard, "--quiet", "--no-mask",
                     "--size", "16", "--workers", "1"]) == 0
        ids.append({row["id"] for row in _read_csv(out / "manifest.csv")})
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert len(ids[0] | ids[1]) == len(scan_sources([src])) == 12
