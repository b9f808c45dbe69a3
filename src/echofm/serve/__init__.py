"""`echofm serve`: a web viewer on top of the study pipeline.

Upload one DICOM cine, an MP4/AVI or a ZIP of a study; a single worker process runs
``echofm.study.run_study`` on it (a queue behind it); the job page shows progress over
clips; the study page shows each clip's cine with the LV overlay, its facts and curves
and the study's measurement table (the same renderers as ``report.html``), with
downloads of study.json, the SEG and the SR. Layout (FastAPI "bigger applications"):
``config`` (options, limits, ``ServeWarning``), ``storage`` (the data folder and its
SQLite index), ``uploads`` (streaming receive, type by content, ZIP checks),
``jobs`` (the queue and its worker process), ``pages`` (HTML), ``routers/`` (one per
resource) and ``app`` (``create_app``, ``serve``). It calls ``study`` and nothing above it.
"""

from echofm.serve.config import ServeConfig, ServeWarning

__all__ = ["ServeConfig", "ServeWarning", "create_app", "serve"]


def __getattr__(name):  # the app pulls in FastAPI; import it only when asked
    if name in ("create_app", "serve"):
        from echofm.serve import app

        return getattr(app, name)
    raise AttributeError(name)
