"""`echofm serve` speed: seconds from the start of an upload to the finished study page,
for the real A4C cine of pydicom-data and an N-clip phantom study (a ZIP), printed as JSON.

Usage: python benchmarks/serve_speed.py --bundle B [--clips 40] [--size 112] [--frames 48]
B is a bundle (e.g. from `echofm bundle phantom --out B`, the default phantom bundle);
without --bundle a small one is trained first (not timed). The server runs under uvicorn
in this process on a free localhost port, its worker in its own process as always. Each
upload is timed from the first byte sent to the study page answering 200, through the
HTTP API as a browser does. The first job includes starting the worker (Python, torch,
the bundle's models): ``real_cine_first_s``; the same cine again (a new study) gives the
warm figure. The phantom exam is written first (not timed).
"""

import argparse
import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_speed import add_exam_options, cpu_name, exam_and_bundle  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed_upload(client, body: bytes, name: str, timeout: float = 1800.0) -> dict:
    start = time.perf_counter()
    answer = client.post("/api/studies", files={"file": (name, body)})
    answer.raise_for_status()
    study = answer.json()["id"]
    uploaded = time.perf_counter() - start
    while True:
        row = client.get(f"/api/studies/{study}").json()
        if row["status"] in ("done", "failed"):
            break
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"study {study} not finished after {timeout} s")
        time.sleep(0.2)
    page = client.get(f"/studies/{study}")
    total = time.perf_counter() - start
    return {"status": row["status"], "upload_s": round(uploaded, 2), "to_finished_page_s": round(total, 2),
            "clips": (row["summary"] or {}).get("clips"), "page_status": page.status_code,
            "message": row["message"] if row["status"] == "failed" else ""}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    add_exam_options(p)
    p.add_argument("--precision", default="auto", help="precision the worker runs the models at")
    a = p.parse_args(argv)

    import httpx
    import uvicorn
    from pydicom.data import get_testdata_file

    from echofm.serve import ServeConfig, create_app

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        exam_dir, bundle = exam_and_bundle(tmp, a)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(exam_dir.rglob("*.dcm")):
                zf.write(path, path.relative_to(exam_dir).as_posix())
        exam = buffer.getvalue()
        cine = Path(get_testdata_file("color3d_jpeg_baseline.dcm")).read_bytes()

        config = ServeConfig(bundle=bundle, data=tmp / "data", port=_free_port(), precision=a.precision,
                             max_upload_mb=4096)
        server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=config.port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=600) as client:
                first = _timed_upload(client, cine, "a4c.dcm")
                warm = _timed_upload(client, cine, "a4c.dcm")
                study = _timed_upload(client, exam, "exam.zip")
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {"real_cine_first_s": first["to_finished_page_s"], "real_cine_warm_s": warm["to_finished_page_s"],
              "phantom_study_s": study["to_finished_page_s"], "phantom_clips": a.clips,
              "phantom_s_per_clip": round(study["to_finished_page_s"] / max(1, study["clips"] or 1), 3),
              "details": {"real_cine_first": first, "real_cine_warm": warm, "phantom_study": study},
              "bundle": str(a.bundle or "small phantom bundle (trained here)"), "precision": a.precision,
              "size": a.size, "frames_per_clip": a.frames, "cpu": cpu_name(), "cpu_count": os.cpu_count(),
              "load_average_at_end": [round(x, 1) for x in load] if load else None}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
