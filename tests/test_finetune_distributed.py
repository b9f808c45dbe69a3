"""Distributed fine-tuning: 2 gloo processes on CPU == 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from echofm.datasets import phantom_task_dataset
from echofm.phantom import PhantomConfig
from echofm.tasks.engine import FinetuneConfig
from echofm.tasks.finetuning import finetune_and_evaluate
from echofm.train import checkpoint as ckpt
from tests._downstream import save_tiny_model

# Only the order of float additions differs: DDP averages two half-batch gradients, one
# process averages the whole batch; AdamW then moves every weight by about lr per step.
TOLERANCE = 1e-5


def phantom_views():
    """16 phantom clips (32 px, 12 frames; the tiny encoder takes 8), 4 per view: 8 train, 4 val, 4 test."""
    return phantom_task_dataset(16, PhantomConfig(size=32, num_frames=12, fps=7.5), seed=5, splits=(0.5, 0.25, 0.25))


def config(batch_size: int, mode: str = "full") -> FinetuneConfig:
    # Full fine-tuning: gradients of encoder and head go through DDP; validation every epoch.
    # Linear probe: its batch norm must see the global batch's statistics, not each rank's half.
    # fp32: the bound is about fp32 summation order; "auto" is bf16 on a CPU with native bf16.
    return FinetuneConfig(task="view", mode=mode, epochs=2, batch_size=batch_size, blr=2e-2, warmup_epochs=0.5,
                          precision="fp32", progress=False)


requires_gloo = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                   reason="torch.distributed with gloo is not available")


@pytest.fixture
def single_process(monkeypatch):
    """The reference run is one plain process, whatever the environment says."""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, init: str, out: str, mode: str = "full") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    finetune_and_evaluate(phantom_views(), init, config(batch_size=2, mode=mode), out)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@requires_gloo
def test_two_gloo_processes_finetune_like_one_process(tmp_path, single_process):
    init = save_tiny_model(tmp_path / "init")
    single = finetune_and_evaluate(phantom_views(), init, config(batch_size=4), tmp_path / "one")
    mp.spawn(_rank_main, args=(2, _free_port(), str(init), str(tmp_path / "two")), nprocs=2, join=True)

    one, two = tmp_path / "one", tmp_path / "two"
    a, b = _weights(one / "run"), _weights(two / "run")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"2 ranks vs 1 process: max weight difference {worst:.2e}")
    assert a.keys() == b.keys() and worst < TOLERANCE
    # Rank 0 logged the ranks' mean loss: the single process's loss, epoch by epoch.
    log1, log2 = _lines(one / "run" / "metrics.jsonl"), _lines(two / "run" / "metrics.jsonl")
    assert [r["step"] for r in log2] == [2, 4]  # 8 clips / (2 ranks x 2) per step
    assert [r["train_loss"] for r in log2] == pytest.approx([r["train_loss"] for r in log1], rel=1e-5)
    # Validation (each epoch) and the test split were shared out and gathered: same scores.
    for r1, r2 in zip(log1, log2):
        assert r2["val"]["video"]["accuracy"] == r1["val"]["video"]["accuracy"]
        assert r2["val_value"] == pytest.approx(r1["val_value"])
    test2 = json.loads((two / "eval" / "metrics.json").read_text())
    assert test2["samples"] == single["samples"] == 4
    assert test2["video"]["auroc"] == pytest.approx(single["video"]["auroc"], abs=1e-6)
    preds1, preds2 = _lines(one / "eval" / "predictions.jsonl"), _lines(two / "eval" / "predictions.jsonl")
    assert [p["id"] for p in preds2] == [p["id"] for p in preds1]
    for p1, p2 in zip(preds1, preds2):
        assert p2["probs"] == pytest.approx(p1["probs"], abs=1e-4)
    # The checkpoint holds both ranks' RNG states; the run records its world size.
    _, state = ckpt.latest_good_checkpoint(two / "run" / "checkpoints")
    assert len(state["rng"]) == 2 and state["sampler"]["epoch"] == 2 and state["step"] == 4
    assert json.loads((two / "run" / "config.json").read_text())["world_size"] == 2


@requires_gloo
def test_two_gloo_processes_train_the_batch_normed_linear_probe_like_one_process(tmp_path, single_process):
    init = save_tiny_model(tmp_path / "init")
    finetune_and_evaluate(phantom_views(), init, config(batch_size=4, mode="linear"), tmp_path / "one")
    mp.spawn(_rank_main, args=(2, _free_port(), str(init), str(tmp_path / "two"), "linear"), nprocs=2, join=True)
    a, b = _weights(tmp_path / "one" / "run"), _weights(tmp_path / "two" / "run")
    assert any("running_var" in k for k in a)  # the probe's batch norm and its running statistics
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst < TOLERANCE
