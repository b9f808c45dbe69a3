"""The `echofm` command: parses options and hands them to library functions.

Each subcommand lives in its own module under `echofm.commands` and exposes
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`; they are discovered
here, so adding a subcommand never touches this file. Command modules import torch and
the heavy parts of the library only inside `run()`, so building this parser (and any
`--help`) stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys

from echofm import __version__
from echofm.errors import EchoFMError


_MENTIONS_DEFAULT = re.compile(r"\bdefaults?\b", re.IGNORECASE)


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help once, and only when it tells something:
    not for a default of None or False, not for an on/off flag, and not when the help
    text already says its default in its own words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        says_nothing = default is None or default is False or default is argparse.SUPPRESS
        is_flag = action.nargs == 0  # store_true / store_false / store_const / count-like flags
        if says_nothing or is_flag or _MENTIONS_DEFAULT.search(text):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text  # a required positional has no default to show
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


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
        formatter_class=HelpFormatter,
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
            formatter_class=HelpFormatter,
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
