"""`echofm embed`: video, per-time-step and token embeddings of many studies."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from echofm.commands._options import (add_device, add_frame_step, add_max_windows, add_precision, add_quiet,
                                      add_window_step)

NAME = "embed"
HELP = "embed studies (DICOM/video/prepared clips) with a model: .npy files plus an index CSV"
DESCRIPTION = (
    "Reads every echo source under SRC (recursively), applies the same preprocessing as "
    "`echofm prepare`, and embeds each whole video window by window. Per input it writes "
    "<id>_video.npy [D] (mean over windows), <id>_frames.npy [W, T, D] (per-time-step projector "
    "embeddings of each window) and, with --tokens, <id>_tokens.npy [W, T*L, D]; <id> is the "
    "content hash of the decoded pixels. index.csv lists them; failures.csv lists inputs that "
    "could not be read. Windows are sampled as the model's input contract asks (each source's frame "
    "rate brought to the model's; --frame-step overrides). A re-run skips inputs already embedded (and "
    "redoes any whose files are gone); an output folder written by another model or other window or "
    "precision settings is refused."
)


def add_arguments(p) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC", help="files or folders of echo studies")
    p.add_argument("--model", required=True, help="preset, echofm model dir, or public EchoFM .pth")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--tokens", action="store_true", help="also write token embeddings (large)")
    add_frame_step(p, old=["--stride"])
    add_window_step(p)
    add_max_windows(p)
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    add_precision(p)
    add_device(p)
    p.add_argument("--keep-paths", action="store_true",
                   help="write each input's path (relative to its SRC) in index.csv; off by default "
                        "because archive paths may carry patient names")
    p.add_argument("--retry-failed", action="store_true", help="try inputs that failed in an earlier run again")
    add_quiet(p)


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from echofm.errors import EchoFMError
    from echofm.files import save_npy_atomic, write_csv_atomic, write_json_atomic
    from echofm.inference import embed_frames, load_study
    from echofm.model import load_model
    from echofm.predict import check_settings, collect_records, finished, model_fingerprint
    from echofm.preprocess.prepare import input_key, scan_sources

    out = Path(args.out)
    state = out / ".state"
    state.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model).eval().to(args.device)
    # Resuming into a folder embedded by another model or settings would mix incomparable vectors.
    try:
        check_settings(state, {"model": model_fingerprint(model), "frame_step": args.frame_step,
                               "window_step": args.window_step, "max_windows": args.max_windows,
                               "precision": args.precision})
    except EchoFMError as exc:
        print(f"echofm embed: {exc}", file=sys.stderr)
        return 2
    sources = scan_sources(args.sources)
    done = failed = skipped = 0
    bar = tqdm(sources, unit="study", desc="embed", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    for source in bar:
        key = input_key(source)
        marker = state / f"{key}.json"
        if finished(marker, out, args.retry_failed, lambda record: _expected_files(record, args.tokens)):
            skipped += 1
            continue
        try:
            clip = load_study(source.path, model.cfg.img_size)
            emb = embed_frames(model, clip.frames, clip.fps, frame_step=args.frame_step, window_step=args.window_step,
                               max_windows=args.max_windows, batch_size=args.batch_size,
                               precision=args.precision, device=args.device, keep_tokens=args.tokens,
                               where=source.relative)
        except (EchoFMError, ValueError, OSError) as exc:
            failed += 1
            record = {"status": "failed", "file": source.relative, "reason": str(exc)}
            write_json_atomic(marker, record)
            continue
        ident = clip.content_hash[:20]
        files = {"video": emb.video, "frames": emb.frames}
        if emb.tokens is not None:
            files["tokens"] = emb.tokens
        for part, array in files.items():
            save_npy_atomic(out / f"{ident}_{part}.npy", np.asarray(array, dtype=np.float32))
        row = {"id": ident, "frames": clip.num_frames, "fps": clip.fps or "", "frame_step": emb.frame_step,
               "windows": len(emb.starts),
               "window_starts": " ".join(map(str, emb.starts)), "dim": int(emb.video.shape[-1]),
               "tokens": int(emb.tokens is not None)}
        if args.keep_paths:
            row["source"] = source.relative
        write_json_atomic(marker, {"status": "done", "row": row, "files": [f"{ident}_{part}.npy" for part in files]})
        done += 1
    rows, failures = collect_records(state)
    write_csv_atomic(out / "index.csv", rows)
    write_csv_atomic(out / "failures.csv", failures, ["file", "reason"])
    print(json.dumps({"embedded": done, "skipped": skipped, "failed": failed, "index": str(out / "index.csv")}))
    return 0


def _expected_files(record: dict, tokens: bool) -> Optional[list[str]]:
    """The files a finished embedding left (records older than "files" wrote the two arrays);
    None when tokens are asked for now and the record has none."""
    row = record.get("row", {})
    if tokens and not row.get("tokens"):
        return None
    return record.get("files") or [f"{row.get('id', '')}_{part}.npy" for part in ("video", "frames")]
