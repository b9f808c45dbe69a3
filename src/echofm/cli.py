"""The `echofm` command: parses options and hands them to library functions.

Each subcommand lives in its own module under `echofm.commands` and exposes
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`; they are discovered
here, so adding a subcommand never touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from echofm import __version__
from echofm.errors import EchoFMError


def _command_modules():
    import echofm.commands as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"echofm.commands.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            yield module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echofm",
        description="echofm: echocardiography video foundation models (EchoFM) — "
        "ingest, synthetic data, pretraining, adaptation and inference.",
    )
    parser.add_argument("--version", action="version", version=f"echofm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except (EchoFMError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"echofm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"echofm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
