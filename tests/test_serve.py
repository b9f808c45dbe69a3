"""`echofm serve` over HTTP (FastAPI's TestClient): uploads refused by content with a 4xx
and nothing stored lost, the token on every route, no server path in any answer, the
list kept across restarts, a killed worker, an interrupted job."""

from __future__ import annotations

import html
import json
import os
import signal
import sqlite3
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("highdicom")

from fastapi.testclient import TestClient  # noqa: E402

from echofm.serve import ServeConfig, ServeWarning, create_app  # noqa: E402
from echofm.study.report import clip_facts  # noqa: E402
from tests._serve import bad_uploads, wait_status  # noqa: E402

LIMITS = dict(max_upload_mb=4.0, max_files=20, max_unpacked_mb=64.0)


def _config(bundle_dir: Path, data: Path, **kw) -> ServeConfig:
    return ServeConfig(bundle=bundle_dir, data=data, precision="fp32", **{**LIMITS, **kw})


def _upload(client: TestClient, body: bytes, name: str = "upload.bin"):
    return client.post("/api/studies", files={"file": (name, body, "application/octet-stream")})


def _status(client: TestClient, study: str) -> dict:
    return client.get(f"/api/studies/{study}").json()


def _wait(client: TestClient, study: str, statuses=("done", "failed"), timeout: float = 150.0) -> dict:
    return wait_status(lambda: _status(client, study), statuses, timeout, what=f"study {study}")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cine(study_dir) -> Path:
    return sorted(study_dir.rglob("*.dcm"))[0]


@pytest.fixture(scope="module")
def phantom_mp4(tmp_path_factory) -> Path:
    from echofm.phantom import PhantomConfig, generate_case
    from echofm.phantom.export import write_video

    case = generate_case(3, PhantomConfig(size=64, num_frames=40, fps=30.0, views=("A4C",)), view="A4C")
    path = tmp_path_factory.mktemp("video") / "a4c.mp4"
    write_video(path, case.frames, 30.0, "libx264")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory, bundle_dir, cine, phantom_mp4):
    """A server with two finished studies (a DICOM cine, an MP4), shared by the tests below."""
    data = tmp_path_factory.mktemp("serve") / "data"
    with TestClient(create_app(_config(bundle_dir, data))) as client:
        first = _upload(client, cine.read_bytes(), "PATIENT^NAME.dcm")
        video = _upload(client, phantom_mp4.read_bytes(), "clip.mp4")
        assert first.status_code == 202 and video.status_code == 202, (first.text, video.text)
        ids = [first.json()["id"], video.json()["id"]]
        rows = [_wait(client, s) for s in ids]
        assert [r["status"] for r in rows] == ["done", "done"], rows
        yield client, data, ids


def test_uploads_are_analysed_and_shown(served):
    client, data, (dicom_id, video_id) = served
    for study in (dicom_id, video_id):
        summary = json.loads(client.get(f"/studies/{study}/files/study.json").content)
        clips = summary["studies"][0]["clips"]
        assert len(clips) == 1
        page = client.get(f"/studies/{study}").text
        assert f"<title>echofm study {study}</title>" in page
        report = client.get(f"/studies/{study}/files/report.html").text
        for label, text in clip_facts(clips[0]):  # one summary, the same on both pages
            row = f"<tr><td>{html.escape(label)}</td><td>{html.escape(text)}</td></tr>"
            assert row in page and row in report, row
        assert clips[0]["clip_id"] in page and clips[0]["view"]["label"] in page
        video = client.get(f"/studies/{study}/files/{clips[0]['files']['cine']}")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content[4:8] == b"ftyp"
        if "seg" in clips[0]["files"]:
            seg = client.get(f"/studies/{study}/files/{clips[0]['files']['seg']}")
            assert seg.content[128:132] == b"DICM"
    assert client.get(f"/api/studies/{video_id}").json()["kind"] == "video"
    # The uploaded file's name (here a patient's name) is kept nowhere.
    listing = client.get("/").text + client.get("/api/studies").text
    assert "PATIENT" not in listing and "PATIENT" not in (data / "index.sqlite").read_bytes().decode("latin-1")


def test_bad_uploads_get_a_4xx_and_lose_nothing(served, cine, lossless_still):
    client, data, ids = served
    before_list = client.get("/api/studies").json()
    before_files = {s: _files(data / "studies" / s) for s in ids}
    for name, (body, status, word) in bad_uploads(cine, lossless_still, int(LIMITS["max_upload_mb"] * 2**20),
                                                  LIMITS["max_files"]).items():
        answer = _upload(client, body)
        assert answer.status_code == status, (name, answer.status_code, answer.text)
        assert word.lower() in answer.json()["detail"].lower(), (name, answer.json())
        assert str(data.parent) not in answer.text, (name, answer.text)  # no server path
    two = client.post("/api/studies", files=[("file", ("a.dcm", cine.read_bytes())), ("file", ("b.dcm", b"x"))])
    assert two.status_code == 400 and "one file" in two.json()["detail"]
    raw = client.post("/api/studies", content=b"\0" * (5 * 2**20), headers={"content-type": "application/octet-stream"})
    assert raw.status_code == 413
    assert client.get("/api/studies").json() == before_list
    assert {s: _files(data / "studies" / s) for s in ids} == before_files
    assert list((data / "incoming").iterdir()) == []  # nothing half-stored either


def test_no_server_path_in_any_answer(served):
    client, data, (study, _) = served
    summary = json.loads(client.get(f"/studies/{study}/files/study.json").content)
    urls = ["/", f"/jobs/{study}", f"/studies/{study}", "/api/studies", f"/api/studies/{study}",
            f"/studies/{study}/files/study.json", f"/studies/{study}/files/report.html"]
    urls += [f"/studies/{study}/files/{f}" for f in summary["studies"][0]["clips"][0]["files"].values()]
    for url in urls:
        answer = client.get(url)
        assert answer.status_code == 200, url
        text = answer.content.decode("latin-1")
        assert str(data) not in text and str(data.resolve()) not in text, url
    for url in (f"/studies/{study}/files/.state/settings.json", f"/studies/{study}/files/../source/upload.dcm",
                f"/studies/{study}/files/%2e%2e/source/upload.dcm", "/studies/nothere/files/study.json",
                f"/studies/{study}/files/clips", "/docs", "/openapi.json"):
        assert client.get(url).status_code == 404, url


def test_token_guards_every_route(tmp_path, bundle_dir, monkeypatch):
    monkeypatch.setenv("ECHOFM_SERVE_TOKEN", "s3cret-token")
    config = _config(bundle_dir, tmp_path / "data")
    assert config.token == "s3cret-token"
    with TestClient(create_app(config)) as client:
        for method, url in [("get", "/"), ("get", "/api/studies"), ("post", "/api/studies"),
                            ("get", "/api/studies/0123456789abcdef01234567"), ("get", "/jobs/0123456789abcdef01234567"),
                            ("get", "/studies/0123456789abcdef01234567/files/study.json")]:
            assert getattr(client, method)(url).status_code == 401, url
            wrong = getattr(client, method)(url, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, url
        assert "Sign in" in client.get("/", headers={"accept": "text/html"}).text
        good = {"Authorization": "Bearer s3cret-token"}
        assert client.get("/api/studies", headers=good).json() == []
        assert client.post("/api/studies", headers=good, content=b"not an echo").status_code == 415
        assert client.post("/login", data={"token": "nope"}).status_code == 401
        signed = client.post("/login", data={"token": "s3cret-token"}, follow_redirects=False)
        assert signed.status_code == 303
        assert client.get("/").status_code == 200  # the cookie now stands for the header


def test_binding_beyond_localhost_warns(tmp_path, bundle_dir):
    from echofm.serve.app import check

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check(_config(bundle_dir, tmp_path, host="127.0.0.1"))
        assert not [w for w in seen if issubclass(w.category, ServeWarning)]
        check(_config(bundle_dir, tmp_path, host="0.0.0.0"))
    found = [w for w in seen if issubclass(w.category, ServeWarning)]
    assert len(found) == 1 and "0.0.0.0" in str(found[0].message) and "no --token" in str(found[0].message)


def test_killed_worker_then_restart(tmp_path, bundle_dir, study_zip, cine):
    """A worker killed mid-study fails that study (with the reason) and the next one runs;
    after a server stop the list and finished studies are all there and the study that
    was running is resumed."""
    data = tmp_path / "data"
    with TestClient(create_app(_config(bundle_dir, data))) as client:
        victim = _upload(client, study_zip.read_bytes()).json()["id"]
        after = _upload(client, cine.read_bytes()).json()["id"]
        cut = _upload(client, study_zip.read_bytes()).json()["id"]
        wait_status(lambda: _status(client, victim), ("running",), 60)
        jobs = client.app.state.jobs
        end = time.monotonic() + 60
        while jobs.worker_pid is None and time.monotonic() < end:
            time.sleep(0.1)
        os.kill(jobs.worker_pid, signal.SIGKILL)
        row = _wait(client, victim)
        assert row["status"] == "failed" and "SIGKILL" in row["message"], row
        assert _wait(client, after)["status"] == "done"
        wait_status(lambda: _status(client, cut), ("running",), 60)
        listed = client.get("/api/studies").json()
        page = client.get(f"/studies/{after}").text
    # The server stopped with `cut` running: the next start resumes it.
    with sqlite3.connect(data / "index.sqlite") as db:
        assert db.execute("SELECT status FROM studies WHERE id = ?", (cut,)).fetchone()[0] == "running"
    with TestClient(create_app(_config(bundle_dir, data))) as client:
        again = {r["id"]: r for r in client.get("/api/studies").json()}
        assert set(again) == {r["id"] for r in listed} == {victim, after, cut}
        for study in (victim, after):
            assert again[study] == next(r for r in listed if r["id"] == study)
        assert client.get(f"/studies/{after}").text == page
        row = _wait(client, cut)
        assert row["status"] == "done" and row["attempts"] == 2, row
        assert row["summary"]["clips"] == 4


def test_a_job_interrupted_too_often_is_marked_failed(tmp_path):
    from echofm.serve.storage import Store, new_id

    store = Store(tmp_path)
    first, second = new_id(), new_id()
    for study in (first, second):
        store.add(study, "zip", 10)
        store.claim_next()
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("UPDATE studies SET attempts = 2 WHERE id = ?", (second,))
    assert dict(store.recover(attempts=2)) == {first: "queued", second: "failed"}
    assert "interrupted" in store.get(second)["message"] and store.get(first)["status"] == "queued"


def test_wrapped_video_keeps_frames_and_rate(tmp_path, phantom_mp4):
    import pydicom

    from echofm.io import read_clip
    from echofm.serve.wrap import video_to_dicom

    ds = pydicom.dcmread(video_to_dicom(phantom_mp4, tmp_path / "v.dcm"))
    source = read_clip(phantom_mp4)
    assert ds.Modality == "US" and int(ds.NumberOfFrames) == source.num_frames
    assert float(ds.FrameTime) == pytest.approx(1000.0 / 30.0, abs=0.01)
    assert str(ds.PatientName) == "" and ds.PatientID == ""
    assert np.abs(ds.pixel_array.astype(int) - source.frames[..., 0] if source.frames.ndim == 4 else
                  ds.pixel_array.astype(int) - source.frames).max() <= 3
