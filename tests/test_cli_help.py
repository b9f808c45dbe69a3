"""The command line starts light and its help shows each default once.

Behaviour, not time: building the parser and printing every subcommand's help must not
import torch, numpy or the heavy parts of echofm (they load only inside a command's run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import echofm
from echofm.cli import HelpFormatter, build_parser

SRC = str(Path(echofm.__file__).parent.parent)
# Modules whose import costs seconds (or pulls one of them in): never needed to show help.
HEAVY = ("torch", "numpy", "scipy", "sklearn", "cv2", "matplotlib", "av", "pydicom", "nibabel", "safetensors",
         "echofm.model.echofm", "echofm.model.weights", "echofm.io.clip", "echofm.datasets.base",
         "echofm.phantom.case", "echofm.tasks.adapter", "echofm.precision")

_PROBE = r"""
import contextlib, io, json, sys
from echofm.cli import build_parser
parser = build_parser()
commands = next(a for a in parser._actions if a.dest == "command").choices
with contextlib.redirect_stdout(io.StringIO()):
    parser.print_help()
    for sub in commands.values():
        sub.print_help()
print(json.dumps({"commands": sorted(commands), "modules": sorted(sys.modules)}))
"""


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def test_help_of_every_command_imports_nothing_heavy():
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(seen["commands"]) >= 13
    loaded = set(seen["modules"])
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY)
    assert not heavy, f"echofm --help imports heavy modules: {heavy}"


def test_echofm_help_runs_as_a_program():
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "echofm", "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "COMMAND" in out.stdout and "finetune" in out.stdout


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_help_shows_each_default_once_and_never_none(name):
    sub = _subcommands()[name]
    formatter = HelpFormatter(prog="echofm")
    for action in sub._actions:
        if action.dest == "help":
            continue
        text = formatter._get_help_string(action) % {"default": action.default}
        label = "/".join(action.option_strings) or action.dest
        assert len(re.findall(r"\(default", text)) <= 1, f"echofm {name} {label}: default shown twice: {text!r}"
        assert "default: None" not in text, f"echofm {name} {label}: {text!r}"
        assert "default: False" not in text, f"echofm {name} {label}: {text!r}"
    assert "default: None" not in sub.format_help()


def test_formatter_adds_a_default_only_when_it_tells_something():
    parser = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    parser.add_argument("--size", type=int, default=112, help="side in pixels")
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument("--name", default="auto", help="run name (default: the source's name)")
    parser.add_argument("--quiet", action="store_true", help="print less")
    parser.add_argument("--color", action="store_false", help="no colours")
    text = " ".join(parser.format_help().split())
    assert "side in pixels (default: 112)" in text
    assert "output folder" in text and "(default: None)" not in text
    assert text.count("default") == 2 and "(default: the source's name)" in text
    assert "(default: False)" not in text and "(default: True)" not in text
