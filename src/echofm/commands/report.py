"""`echofm report`: an HTML page of a run's curves, metrics and figures."""

from __future__ import annotations

NAME = "report"
HELP = "write RUN/report.html with the run's training curves, metrics and figures"


def add_arguments(p) -> None:
    p.add_argument("run", help="run directory (pretraining, fine-tuning, evaluation or demo output)")
    p.add_argument("--title", default=None, help="page title (default: the run directory's name)")


def run(args) -> int:
    from echofm.analysis.report import build_run_report

    path = build_run_report(args.run, args.title)
    print(path)
    return 0
