"""`echofm serve` in a real browser: Debian's chromium driven by selenium (chromium-driver)
against a server this test starts on a free localhost port. The phantom study and the
real A4C cine are uploaded through the page, their study pages show the clips, the cines
play and the measurement table equals study.json; bad uploads get a 4xx; 20 uploads at
once are all queued and finished, none mixed up, while the pages keep answering.

With ECHOFM_SCREENSHOT=docs/serve_study_page.png the phantom study page is saved there
(the picture in docs/serve.md); without it nothing is written into the tree."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("highdicom")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install 'echofm[test]')")

from echofm.serve import ServeConfig, create_app  # noqa: E402
from tests._serve import bad_uploads, wait_status, zip_bytes  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("no chromium and chromium-driver here (apt-get install chromium chromium-driver; .ci/run does)",
                allow_module_level=True)

MAX_UPLOAD_MB = 8.0
MAX_FILES = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    """The app under uvicorn in a thread on a free port; its URL."""
    config = ServeConfig(bundle=bundle_dir, data=tmp_path_factory.mktemp("browser") / "data", port=_free_port(),
                         precision="fp32", max_upload_mb=MAX_UPLOAD_MB, max_files=MAX_FILES, max_unpacked_mb=64)
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=config.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < end and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                 "--autoplay-policy=no-user-gesture-required",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _upload_in_page(browser, url: str, path: Path, timeout: float = 60.0) -> str:
    """Upload ``path`` with the page's form; returns the answer's status ('202' when
    accepted: the page then goes to the job page)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    browser.get(url + "/")
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "send").click()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if "/jobs/" in browser.current_url or "/studies/" in browser.current_url:
            return "202"
        try:
            status = browser.find_element(By.ID, "upload-result").get_attribute("data-status")
        except WebDriverException:  # the page is going to the job page under our feet
            status = None
        if status:
            return status
        time.sleep(0.1)
    raise AssertionError(f"no answer to the upload of {path.name}")


def _wait_study_page(browser, timeout: float = 150.0) -> str:
    end = time.monotonic() + timeout
    while "/studies/" not in browser.current_url:
        if time.monotonic() > end:
            raise AssertionError(f"still on {browser.current_url}: {browser.page_source[-500:]}")
        time.sleep(0.2)
    return browser.current_url.rstrip("/").rsplit("/", 1)[-1]


def _check_study_page(browser, url: str, study: str) -> dict:
    from selenium.webdriver.common.by import By

    summary = httpx.get(f"{url}/studies/{study}/files/study.json").json()
    entry = summary["studies"][0]
    assert browser.title == f"echofm study {study}"
    shown = browser.find_elements(By.CSS_SELECTOR, "div.clip")
    assert [c.get_attribute("data-clip") for c in shown] == [r["clip_id"] for r in entry["clips"]]
    # Every cine plays: its currentTime advances.
    videos = browser.find_elements(By.CSS_SELECTOR, "video")
    assert len(videos) == len(entry["clips"])
    for video in videos:
        start = browser.execute_script("const v = arguments[0]; v.muted = true; v.play(); return v.currentTime;",
                                       video)
        end = time.monotonic() + 15
        while browser.execute_script("return arguments[0].currentTime;", video) <= start + 0.05:
            state = browser.execute_script("const v = arguments[0]; return [v.readyState, v.error && v.error.code];",
                                           video)
            assert time.monotonic() < end, f"the cine does not play (readyState, error): {state}"
            time.sleep(0.1)
    # The measurement table is study.json's.
    table = browser.find_elements(By.CSS_SELECTOR, "table.measurements tr[data-key]")
    rows = {r.get_attribute("data-key"): r for r in table}
    numeric = {k: v for k, v in entry["measurements"].items() if isinstance(v, dict) and "value" in v}
    assert set(rows) == set(numeric) | ({"disease"} if "disease" in entry["measurements"] else set())
    for key, m in numeric.items():
        cells = rows[key].find_elements(By.TAG_NAME, "td")
        assert float(rows[key].get_attribute("data-value")) == m["value"]
        assert float(rows[key].get_attribute("data-sd")) == m["sd"]
        assert int(rows[key].get_attribute("data-n")) == m["n_clips"] == int(cells[3].text)
        assert cells[1].text == f"{m['value']:.1f} {m['unit']}" and cells[2].text == f"± {m['sd']:.1f}"
    if "disease" in entry["measurements"]:
        assert rows["disease"].find_elements(By.TAG_NAME, "td")[1].text == entry["measurements"]["disease"]["label"]
    assert browser.find_elements(By.CSS_SELECTOR, "svg[role=img]"), "no curves drawn"
    return summary


def test_upload_phantom_study_and_real_cine(server, browser, study_zip, color3d_cine):
    assert _upload_in_page(browser, server, study_zip) == "202"
    study = _wait_study_page(browser)
    summary = _check_study_page(browser, server, study)
    assert summary["studies"][0]["clips_analysed"] == 4
    shot = os.environ.get("ECHOFM_SCREENSHOT")
    if shot:
        browser.set_window_size(1280, 1500)
        time.sleep(1.0)
        browser.save_screenshot(shot)
    assert _upload_in_page(browser, server, color3d_cine) == "202"
    real = _wait_study_page(browser)
    assert real != study
    summary = _check_study_page(browser, server, real)
    assert summary["studies"][0]["clips"][0]["frames"] == 120


def test_bad_uploads_in_the_page_get_4xx(server, browser, tmp_path, color3d_cine, lossless_still):
    bad = bad_uploads(color3d_cine, lossless_still, int(MAX_UPLOAD_MB * 2**20), MAX_FILES)
    before = httpx.get(f"{server}/api/studies").json()
    for name in ("text file", "zip with ../x", "over the limit"):
        body, status, _ = bad[name]
        path = tmp_path / name.replace(" ", "_").replace("/", "_").replace(".", "_")
        path.write_bytes(body)
        assert _upload_in_page(browser, server, path) == str(status), name
    assert httpx.get(f"{server}/api/studies").json() == before


def _variant(cine: Path, index: int) -> bytes:
    """The cine with its own study, series and instance UIDs: a different study to the server."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(cine)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def test_twenty_uploads_at_once(server, study_dir):
    import pydicom

    cines = sorted(study_dir.rglob("*.dcm"))
    bodies = [_variant(cines[i % len(cines)], i) for i in range(20)]
    sops = [pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True).SOPInstanceUID for b in bodies]

    def send(i: int):
        with httpx.Client(base_url=server, timeout=60) as client:
            body = bodies[i] if i % 2 else zip_bytes({f"exam/{i}.dcm": bodies[i]})
            answer = client.post("/api/studies", files={"file": (f"{i}.bin", body)})
            assert answer.status_code == 202, answer.text
            return answer.json()["id"]

    with ThreadPoolExecutor(max_workers=5) as pool:
        ids = list(pool.map(send, range(20)))
    assert len(set(ids)) == 20
    listed = {r["id"]: r for r in httpx.get(f"{server}/api/studies").json()}
    assert set(ids) <= set(listed) and all(listed[i]["status"] in ("queued", "running", "done") for i in ids)
    slowest = 0.0
    with httpx.Client(base_url=server, timeout=30) as client:
        for study in ids:  # the pages answer while the worker is busy
            t0 = time.monotonic()
            assert client.get("/").status_code == 200
            assert client.get(f"/jobs/{study}").status_code == 200
            slowest = max(slowest, time.monotonic() - t0)
            wait_status(lambda: client.get(f"/api/studies/{study}").json(), ("done", "failed"), 180)
        for study, sop in zip(ids, sops):
            row = client.get(f"/api/studies/{study}").json()
            assert row["status"] == "done", row
            summary = client.get(f"/studies/{study}/files/study.json").json()
            clips = [c for s in summary["studies"] for c in s["clips"]]
            assert [c["sop_instance_uid"] for c in clips] == [sop]  # its own cine, no other
    assert slowest < 5.0, f"a page took {slowest:.1f} s while the worker was busy"


def test_chunked_upload_is_stopped_while_it_streams(server):
    """A chunked body (no Content-Length) over the limit is answered 413 while it is still
    being sent, not after all of it was taken in (a raw socket, as the TestClient and httpx
    both send a whole body before they read the answer)."""
    import select
    from urllib.parse import urlparse

    from echofm.serve.uploads import _DRAIN_LIMIT

    address = urlparse(server)
    chunk = b"\0" * 2**20
    sent, answer = 0, b""
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(b"POST /api/studies HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        while sent < 400 * 2**20:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(30)
        try:
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent <= MAX_UPLOAD_MB * 2**20 + _DRAIN_LIMIT + 32 * 2**20, f"{sent / 2**20:.0f} MB sent before the answer"
    assert httpx.get(f"{server}/").status_code == 200
