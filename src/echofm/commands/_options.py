"""Command-line options shared by several commands: one definition, one name, one help text.

Batch-job options (``--allow-failures``, ``--keep-paths``, ``--retry-failed``, ``--quiet``)
map onto ``echofm.batch.BatchOptions``; ``report_batch`` prints a job's summary the same
way for every command and returns its exit status.
"""

from __future__ import annotations

import json
import sys


def add_batch_options(parser, *, retry: bool = True) -> None:
    """The options of every resumable batch job (prepare, embed, predict, diagnose, study)."""
    parser.add_argument("--allow-failures", action="store_true",
                        help="exit with status 0 even when some inputs failed (they are still listed in "
                             "failures.csv); without it any failed input makes the exit status 1")
    parser.add_argument("--keep-paths", action="store_true",
                        help="write each input's path (relative to its SRC) in the outputs (index, failures.csv, "
                             "per-input records); off by default because archive paths often carry patient "
                             "names and dates")
    if retry:
        parser.add_argument("--retry-failed", action="store_true",
                            help="try inputs that failed in an earlier run into the same --out again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def batch_options(args):
    """``BatchOptions`` from the parsed batch options."""
    from echofm.batch import BatchOptions

    return BatchOptions(allow_failures=args.allow_failures, keep_paths=args.keep_paths,
                        retry_failed=getattr(args, "retry_failed", False), progress=not args.quiet)


def report_batch(summary, extra: dict | None = None) -> int:
    """Print the summary as JSON on stdout, then the human line (counts and where the
    reasons are) as the last line on stderr; return the job's exit status."""
    print(json.dumps({**summary.to_dict(), **(extra or {})}), flush=True)
    print(summary.line(), file=sys.stderr, flush=True)
    return summary.exit_status


def add_backend_option(parser) -> None:
    """``--backend``: the engine that runs the model (torch, or ONNX Runtime on an export)."""
    from echofm.choices import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="torch, or onnx: ONNX Runtime on a folder written by `echofm export --format onnx` "
                             "(give that folder as --model; its model.int8.onnx for the int8 copy); needs the "
                             "onnx extra")
