"""Command-line options shared by the commands: one flag name, one definition, one help text per concept.

``--frame-step`` (take every Nth frame), ``--window-step`` (frames between window starts),
``--max-windows``, ``--mask-sector``, ``--precision``, ``--device``, ``--quiet``, ``--workers``: a command calls
the ``add_*`` helper for each concept it has, passing the names it used before; those stay
one release as hidden aliases that print a deprecation warning naming the new flag.
Batch-job options (``--allow-failures``, ``--keep-paths``, ``--retry-failed``, ``--quiet``)
map onto ``echofm.batch.BatchOptions``; ``report_batch`` prints a job's summary the same
way for every command and returns its exit status.

Light on purpose (argparse only): ``--help`` must not import torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

PRECISION_CHOICES = ("auto", "fp32", "bf16")  # echofm.precision.PRECISION_CHOICES, without importing torch


class _DeprecatedAlias(argparse.Action):
    """An old flag name: stores into the new flag's destination and warns once per use."""

    def __init__(self, option_strings, dest, new: str, nargs=None, const=None, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, nargs=nargs, const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"echofm: warning: {option_string} is deprecated and will be removed in the next release; "
              f"use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def _aliases(p: argparse.ArgumentParser, old: Sequence[str], new: str, dest: str, **kwargs) -> None:
    for name in old:
        p.add_argument(name, dest=dest, action=_DeprecatedAlias, new=new, default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS, **kwargs)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


MODEL_SOURCES = ("a preset (e.g. echofm-tiny: random init), echofm-tiny-phantom (the small reference model shipped "
                 "in the package), a saved echofm model directory, a public EchoFM .pth, or "
                 "hf:ORG/NAME[@REVISION][/FILE] (the Hugging Face Hub; see docs/hub.md)")


def add_model_source(p: argparse.ArgumentParser, flag: str = "--model", required: bool = True,
                     role: str = "model", extra: str = "") -> None:
    """The encoder a command runs or adapts: every form ``echofm.load_model`` accepts, one help text."""
    p.add_argument(flag, required=required, default=None, help=f"{role}: {MODEL_SOURCES}{extra}")


def add_frame_step(p: argparse.ArgumentParser, old: Sequence[str] = (), default: Optional[int] = None,
                   help: Optional[str] = None) -> None:
    """``--frame-step N``: take every Nth frame into a window (default: what the model's input
    contract asks for, from each source's frame rate)."""
    p.add_argument("--frame-step", type=_positive, default=default, metavar="N", help=help or (
        "take every Nth frame into a window (default: the step that brings each source's frame rate to "
        "the one the model was trained at, from its input contract)"))
    _aliases(p, old, "--frame-step", "frame_step", type=_positive)


def add_window_step(p: argparse.ArgumentParser, old: Sequence[str] = (), default: Optional[int] = None,
                    help: Optional[str] = None) -> None:
    """``--window-step N``: frames between the starts of consecutive windows."""
    p.add_argument("--window-step", type=_positive, default=default, metavar="N", help=help or (
        "frames between the starts of consecutive windows (default: back to back, the last window "
        "ending on the last frame)"))
    _aliases(p, old, "--window-step", "window_step", type=_positive)


def add_max_windows(p: argparse.ArgumentParser, old: Sequence[str] = (), default: Optional[int] = None,
                    help: Optional[str] = None) -> None:
    """``--max-windows N``: at most N windows per video, evenly spread."""
    p.add_argument("--max-windows", type=_positive, default=default, metavar="N",
                   help=help or "at most N windows per video, evenly spread (default: all)")
    _aliases(p, old, "--max-windows", "max_windows", type=_positive)


MASK_AS_CONTRACT = ("as the model was trained, from its input contract: masked for echofm-trained models, "
                    "the whole image for public EchoFM checkpoints")


def add_mask_sector(p: argparse.ArgumentParser, old: Sequence[str] = ("--no-mask",),
                    default: str = MASK_AS_CONTRACT) -> None:
    """``--mask-sector`` / ``--no-mask-sector``: blank and crop to the ultrasound sector or keep the
    whole image. Unset (None) means ``default``, said in words: for a model, its input
    contract (``echofm.contract.sector_masking``)."""
    p.add_argument("--mask-sector", action=argparse.BooleanOptionalAction, default=None,
                   help="detect the ultrasound sector, blank everything outside it and crop to it "
                        f"(--no-mask-sector: keep the whole image, only pad and resize); default: {default}")
    _aliases(p, old, "--no-mask-sector", "mask_sector", nargs=0, const=False)


def add_precision(p: argparse.ArgumentParser, default: Optional[str] = "auto") -> None:
    """``--precision {auto,fp32,bf16}``."""
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=default,
                   help="numeric precision: auto (bf16 where the hardware runs it natively: a GPU with bf16, "
                        "a CPU with AVX512_BF16 or AMX; else fp32; `echofm doctor` says which), fp32 or bf16")


def add_device(p: argparse.ArgumentParser, default: Optional[str] = "cpu", help: Optional[str] = None) -> None:
    """``--device``: the torch device the model runs on."""
    p.add_argument("--device", default=default, help=help or "torch device: cpu, cuda, cuda:1 ...")


def add_quiet(p: argparse.ArgumentParser, old: Sequence[str] = ()) -> None:
    """``--quiet``: no progress bar or progress lines."""
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    _aliases(p, old, "--quiet", "quiet", nargs=0, const=True)


def add_workers(p: argparse.ArgumentParser, default: Optional[int], old: Sequence[str] = (),
                help: Optional[str] = None) -> None:
    """``--workers N``: worker processes (data loading or parallel jobs)."""
    p.add_argument("--workers", type=int, default=default, metavar="N", help=help or "worker processes")
    _aliases(p, old, "--workers", "workers", type=int)


# --- batch jobs ---------------------------------------------------------------------------

def add_batch_options(parser, *, retry: bool = True, old_quiet: Sequence[str] = ()) -> None:
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
    add_quiet(parser, old=old_quiet)


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
