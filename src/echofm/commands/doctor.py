"""`echofm doctor`: what this machine offers and what each command would pick on it."""

from __future__ import annotations

import json

NAME = "doctor"
HELP = "print CPU flags, cores, threads, CUDA devices, and the precision and backend each command picks"
DESCRIPTION = (
    "Reports the CPU (model, the flags that matter: AVX2, AVX-512, AVX512_BF16, AMX), cores, torch threads, "
    "CUDA devices and their bf16 support, whether ONNX Runtime is installed, and for every command that runs "
    "a model the precision that --precision auto resolves to and the backend it uses. bf16 is chosen only "
    "where it is native (a CUDA device of compute capability 8.0+, or a CPU with AVX512_BF16 or AMX).")


def add_arguments(p) -> None:
    p.add_argument("--device", default="cpu", help="torch device to report the choices for (cpu, cuda, cuda:1 ...)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    from echofm.runtime.report import format_report, machine_report

    report = machine_report(args.device)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
