"""`echofm serve`: the web viewer (upload a study, follow its analysis, check the results)."""

from __future__ import annotations

NAME = "serve"
HELP = "web viewer: upload a study, follow its analysis by `echofm study`, check every clip and measurement"
DESCRIPTION = (
    "Runs a web server (FastAPI under uvicorn; pip install 'echofm[serve]'). Its pages: the list of studies "
    "(kept in DIR across restarts) with an upload form for one DICOM cine, an MP4/AVI video or a ZIP of a study "
    "export; a job page with progress over clips while one worker process runs `echofm study` (a queue behind it); "
    "a study page with each clip's cine and LV overlay, its view and probabilities, the LV area and phase curves "
    "with ED/ES, the study's measurement table and downloads of study.json, the DICOM SEG and SR. Listens on "
    "127.0.0.1 unless --host says otherwise (then it warns). Uploads are typed by content and limited in size "
    "and number of files; ZIPs are checked for path traversal and bombs; studies get random IDs.")


def add_arguments(p) -> None:
    from echofm.commands._options import add_device, add_precision

    p.add_argument("--bundle", required=True, metavar="B",
                   help="model bundle folder every study runs with (echofm bundle create / echofm bundle phantom)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="folder holding the uploaded studies, their results and the SQLite index (created; kept "
                        "across restarts)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything beyond localhost warns, as every result is then reachable "
                        "from the network")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--token", default=None,
                   help="bearer token every route requires (default: the ECHOFM_SERVE_TOKEN environment variable, "
                        "which is better: a command line shows in ps); browsers sign in once at /login")
    p.add_argument("--max-upload-mb", type=float, default=1024.0,
                   help="largest upload in MB, checked while it streams in")
    p.add_argument("--max-files", type=int, default=1000, help="most files a ZIP upload may hold")
    p.add_argument("--max-unpacked-mb", type=float, default=4096.0, help="most a ZIP upload may expand to, in MB")
    add_precision(p)
    add_device(p)


def run(args) -> int:
    from echofm.serve import ServeConfig, serve

    serve(ServeConfig(bundle=args.bundle, data=args.data, host=args.host, port=args.port, token=args.token,
                      max_upload_mb=args.max_upload_mb, max_files=args.max_files,
                      max_unpacked_mb=args.max_unpacked_mb, device=args.device, precision=args.precision))
    return 0
