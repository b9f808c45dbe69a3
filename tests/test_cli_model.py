"""The `echofm` command for models: help, info, convert (public <-> echofm) round trips."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from echofm.cli import main


def test_help_lists_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "convert" in out and "info" in out
    proc = subprocess.run([sys.executable, "-m", "echofm", "convert", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--to" in proc.stdout


def test_convert_public_round_trip_is_lossless(official_dir, tmp_path, capsys):
    src = official_dir / "tiny_official_training_ckpt.pth"
    assert main(["convert", str(src), "--out", str(tmp_path / "ours")]) == 0
    assert main(["convert", str(tmp_path / "ours"), "--to", "public", "--out", str(tmp_path / "back.pth")]) == 0
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        original = torch.load(src, weights_only=True)["model"]
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(back["model"]) == list(original)
    for key, value in original.items():
        assert torch.equal(back["model"][key], value), key
    assert back["model_args"]["num_frames"] == 16
    capsys.readouterr()
    assert main(["info", str(tmp_path / "back.pth")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layout"] == "public-release" and info["config"]["embed_dim"] == 64


def test_cli_error_is_one_line_with_nonzero_exit(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert "missing.pth" in err and len(err.strip().splitlines()) == 1
