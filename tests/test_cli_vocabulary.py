"""One flag name per concept on every command (walks every subcommand's parser)."""

from __future__ import annotations

import argparse

import pytest

from echofm.cli import build_parser

# Where each concept applies: commands that cut videos into windows, run a model, show progress, fork workers.
WINDOWED = {"pretrain", "finetune", "evaluate", "predict", "embed", "phase", "reconstruct", "diagnose"}
PLACED = {"finetune", "evaluate", "predict", "embed", "diagnose"}  # several windows per video, placed
RUN_MODEL = WINDOWED | {"study", "serve"}  # study (and serve, which runs it): its bundle's task models, each by its own contract
PROGRESS = {"synth", "prepare", "pretrain", "finetune", "predict", "embed", "diagnose", "study"}
WORKERS = {"synth", "prepare", "pretrain", "finetune"}
MASKING = {"prepare", "embed", "predict", "phase", "reconstruct", "diagnose"}  # read a source and may mask its sector
EXPECTED = {"--frame-step": WINDOWED, "--window-step": PLACED, "--max-windows": PLACED, "--precision": RUN_MODEL,
            "--device": RUN_MODEL, "--quiet": PROGRESS, "--workers": WORKERS, "--mask-sector": MASKING,
            "--no-mask-sector": MASKING}
DEPRECATED = {"--frame-stride", "--period", "--stride", "--eval-stride", "--eval-max-windows", "--no-progress",
              "--num-workers", "--no-mask"}


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def _visible(sub: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {name: a for a in sub._actions if a.help != argparse.SUPPRESS for name in a.option_strings}


def _every_parser(name: str, sub: argparse.ArgumentParser):
    """A command's parser and those of its own subcommands (e.g. ``bundle create``)."""
    yield name, sub
    for action in sub._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child, parser in action.choices.items():
                yield from _every_parser(f"{name} {child}", parser)


def test_canonical_names_where_the_concept_applies_and_no_visible_old_names():
    commands = _commands()
    assert WINDOWED | PROGRESS <= set(commands)
    for name, sub in commands.items():
        visible = _visible(sub)
        for flag, where in EXPECTED.items():
            if name in where:
                assert flag in visible, f"echofm {name}: no {flag}"
        for full, parser in _every_parser(name, sub):
            shown = _visible(parser)
            shown_old = DEPRECATED & set(shown)
            assert not shown_old, f"echofm {full}: deprecated names in --help: {shown_old}"
            if "--precision" in shown:
                assert tuple(shown["--precision"].choices) == ("auto", "fp32", "bf16"), full
                assert shown["--precision"].default in ("auto", None), full  # None: pretrain's config (auto)
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    continue  # its subcommands are walked themselves
                if action.dest != "help" and action.help != argparse.SUPPRESS:
                    assert (action.help or "").strip(), f"echofm {full}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("argv, dest, value, new", [
    (["finetune", "--task", "ef", "--data", "d", "--format", "echonet", "--init", "echofm-tiny", "--out", "o",
      "--period", "2"], "frame_step", 2, "--frame-step"),
    (["finetune", "--task", "ef", "--data", "d", "--format", "echonet", "--init", "echofm-tiny", "--out", "o",
      "--eval-stride", "5", "--num-workers", "3", "--no-progress"], "window_step", 5, "--window-step"),
    (["predict", "x", "--model", "m", "--out", "o", "--stride", "7"], "window_step", 7, "--window-step"),
    (["embed", "x", "--model", "m", "--out", "o", "--stride", "3"], "frame_step", 3, "--frame-step"),
    (["pretrain", "--out", "o", "--frame-stride", "1"], "frame_step", 1, "--frame-step"),
    (["synth", "--out", "o", "--no-progress"], "quiet", True, "--quiet"),
    (["evaluate", "--model", "m", "--out", "o", "--eval-max-windows", "2"], "max_windows", 2, "--max-windows"),
    (["predict", "x", "--model", "m", "--out", "o", "--no-mask"], "mask_sector", False, "--no-mask-sector"),
    (["diagnose", "--model", "m", "--data", "d", "--out", "o", "--no-mask"], "mask_sector", False, "--no-mask-sector"),
    (["prepare", "x", "--out", "o", "--no-mask"], "mask_sector", False, "--no-mask-sector"),
])
def test_old_names_still_work_and_warn(argv, dest, value, new, capsys):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err
    assert "is deprecated" in err and new in err


def test_new_names_parse_and_unset_ones_default_to_the_contract():
    parser = build_parser()
    args = parser.parse_args(["finetune", "--task", "ef", "--data", "d", "--format", "echonet", "--init", "x",
                              "--out", "o", "--eval-stride", "5", "--num-workers", "3", "--no-progress"])
    assert (args.window_step, args.workers, args.quiet, args.frame_step) == (5, 3, True, None)
    args = parser.parse_args(["predict", "x", "--model", "m", "--out", "o", "--frame-step", "2", "--window-step", "4"])
    assert (args.frame_step, args.window_step, args.max_windows, args.precision) == (2, 4, None, "auto")
    with pytest.raises(SystemExit):
        parser.parse_args(["embed", "x", "--model", "m", "--out", "o", "--frame-step", "0"])


@pytest.mark.parametrize("name", sorted(MASKING))
def test_sector_masking_is_unset_unless_asked(name):
    """Unset, the command follows the model's input contract (or masks, for prepare); the two
    flag forms force it either way."""
    commands = _commands()
    sub = commands[name]
    action = next(a for a in sub._actions if "--mask-sector" in a.option_strings)
    assert action.default is None and "--no-mask-sector" in action.option_strings
    assert "default" in action.help  # says the default in words, once
