"""The job queue of `echofm serve`: one worker process runs the study pipeline on one
study at a time; the queued studies wait in the SQLite index.

The worker is a separate process (multiprocessing ``spawn``: no state shared with the
server) that loads the bundle once and then takes studies one by one, running
``echofm.study.run_study`` and sending back progress over clips. A thread in the server
(``JobQueue``) hands it the oldest queued study and watches it: when the worker process
dies mid-study (killed, out of memory, a crash in native code), the study is marked
failed with that reason, and the next study gets a fresh worker. The server itself is
never taken down by a study. A study still running when the server stops is resumed on
the next start (``Store.recover``; the pipeline skips the clips it finished).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal
import threading
from pathlib import Path
from typing import Optional

from echofm.serve.config import ServeConfig
from echofm.serve.storage import Store

log = logging.getLogger("echofm.serve")


def _summary(result) -> dict:
    """What the list of studies shows of a finished job (no identifiers)."""
    first = result.studies[0] if result.studies else {}
    values = {k: v["value"] for k, v in first.get("measurements", {}).items() if isinstance(v, dict) and "value" in v}
    return {"studies": len(result.studies), "clips": sum(s["clips_analysed"] for s in result.studies),
            "failed": result.batch.failed_total, "not_analysed": result.listed,
            "views": first.get("measurements", {}).get("views", {}), **values}


def _warm(bundle_path: str):
    """The bundle with every model loaded, and the modules a study needs imported."""
    import echofm.analysis.phase  # noqa: F401
    import echofm.predict  # noqa: F401
    import echofm.preprocess.transforms  # noqa: F401
    from echofm.study import load_bundle

    bundle = load_bundle(bundle_path)
    for role in bundle.roles:
        bundle.model(role)
    return bundle


def worker_main(bundle_path: str, device: str, precision: str, tasks, events) -> None:
    """The worker process: studies from ``tasks`` through the pipeline; events back."""
    logging.basicConfig(level=logging.WARNING)
    from echofm.batch import BatchOptions, failure_reason
    from echofm.serve.wrap import video_to_dicom
    from echofm.study import StudyConfig, load_bundle, run_study

    bundle = None
    try:  # load everything once, before the first study asks (a failure here is reported per study below)
        bundle = _warm(bundle_path)
    except Exception:
        bundle = None
    while True:
        task = tasks.get()
        if task is None:
            return
        study, source, out = task
        source, out = Path(source), Path(out)
        try:
            if bundle is None:
                events.put(("progress", study, 0, 0, "loading the model bundle"))
                bundle = load_bundle(bundle_path)
            for video in [p for p in (source / "upload.mp4", source / "upload.avi") if p.exists()]:
                # an MP4/AVI upload: the pipeline reads DICOM studies
                events.put(("progress", study, 0, 0, "wrapping the video as a DICOM cine"))
                video_to_dicom(video, source / "video.dcm")
                video.unlink()
            events.put(("progress", study, 0, 0, "scanning the study"))

            def report(done: int, total: int) -> None:
                events.put(("progress", study, done, total, f"{done} of {total} clips analysed"))

            options = BatchOptions(allow_failures=True, progress=False, on_progress=report)
            result = run_study(source, bundle, out, StudyConfig(device=device, precision=precision), options)
            summary = _summary(result)
            if summary["clips"] == 0:
                reasons = [r.get("reason", "") for r in result.batch.failure_rows][:3]
                why = ": " + "; ".join(reasons) if reasons else ""
                events.put(("failed", study, f"no cine could be analysed{why}"))
            else:
                events.put(("done", study, summary))
        except Exception as exc:  # one study's failure is reported, the worker goes on
            events.put(("failed", study, failure_reason(exc)))


class JobQueue:
    """Hands queued studies to the one worker process and records what comes back."""

    def __init__(self, store: Store, config: ServeConfig):
        self.store, self.config = store, config
        self.ctx = mp.get_context("spawn")
        self.worker: Optional[mp.process.BaseProcess] = None
        self.tasks = self.events = None
        self.current: Optional[str] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def worker_pid(self) -> Optional[int]:
        return self.worker.pid if self.worker is not None and self.worker.is_alive() else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="echofm-serve-queue", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A study was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Stop taking studies and end the worker (a running study resumes at the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.worker is not None:
            if self.worker.is_alive():
                self.tasks.put(None)
                self.worker.join(timeout=2 if self.current is None else 0.1)
            if self.worker.is_alive():
                self.worker.terminate()
                self.worker.join(timeout=5)
        self.worker = None

    def _ensure_worker(self) -> None:
        if self.worker is not None and self.worker.is_alive():
            return
        self.tasks, self.events = self.ctx.Queue(), self.ctx.Queue()
        self.worker = self.ctx.Process(
            target=worker_main, name="echofm-serve-worker", daemon=True,
            args=(str(self.config.bundle), self.config.device, self.config.precision, self.tasks, self.events))
        self.worker.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # the queue thread must outlive any one bad state
                log.exception("echofm serve: the job queue hit an error; going on")
                self._stop.wait(1.0)

    def _step(self) -> None:
        if self.current is None:
            job = self.store.claim_next()
            if job is None:
                self._wake.wait(0.5)
                self._wake.clear()
                return
            self.current = job["id"]
            self._ensure_worker()
            self.store.progress(self.current, 0, 0, "waiting for the worker process")
            self.tasks.put((self.current, str(self.store.source(self.current)), str(self.store.out(self.current))))
            log.info("echofm serve: study %s started", self.current)
        try:
            event = self.events.get(timeout=0.3)
        except queue.Empty:
            if self.worker is not None and not self.worker.is_alive():
                self._worker_died()
            return
        kind, study = event[0], event[1]
        if study != self.current:
            return
        if kind == "progress":
            self.store.progress(study, event[2], event[3], event[4])
        elif kind == "done":
            self.store.finish(study, "done", "finished", event[2])
            log.info("echofm serve: study %s done", study)
            self.current = None
        elif kind == "failed":
            self.store.finish(study, "failed", event[2])
            log.warning("echofm serve: study %s failed: %s", study, event[2])
            self.current = None

    def _worker_died(self) -> None:
        code = self.worker.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"ended with exit status {code}"
        reason = f"the worker process {how} while analysing this study"
        self.store.finish(self.current, "failed", reason)
        log.warning("echofm serve: study %s failed: %s", self.current, reason)
        self.current = None
        self.worker = None
