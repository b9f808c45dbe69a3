"""Distributed pretraining: 2 gloo processes on CPU == 1 process with the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

# fp32 in both runs: the 1e-5 bound is float32 summation order (``auto`` is bf16 on an AMX CPU).
from test_pretrain import PeriodicClips, max_weight_difference, run_config, weights

STEPS = 3
# Max |weight difference| after STEPS AdamW steps, attention key biases excluded (see
# max_weight_difference). Only the order of float additions differs: DDP averages two
# half-batch gradients, one process averages the whole batch.
TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from echofm.train.pretrain import pretrain

    pretrain(run_config(Path(out), steps=STEPS, batch_size=2, checkpoint_every=2, precision="fp32"), dataset=PeriodicClips(16))


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_gloo_processes_match_one_process(tmp_path, monkeypatch):
    from echofm.train.pretrain import pretrain

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    single = pretrain(run_config(tmp_path / "one", steps=STEPS, batch_size=4, checkpoint_every=2,
                                precision="fp32"),
                      dataset=PeriodicClips(16))
    mp.spawn(_rank_main, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)

    a, b = weights(single.model), weights(tmp_path / "two" / "model")
    worst = max_weight_difference(a, b)
    print(f"2 ranks vs 1 process: max weight difference {worst:.2e}")
    assert worst < TOLERANCE, f"weights differ by {worst}"
    # The global losses logged by rank 0 match the single process's.
    import json

    logged = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in logged] == pytest.approx([h["loss"] for h in single.history], rel=1e-5)
    # The checkpoint holds both ranks' RNG states and the sampler position.
    from echofm.train import checkpoint as ckpt

    _, state = ckpt.latest_good_checkpoint(tmp_path / "two" / "checkpoints")
    assert len(state["rng"]) == 2 and state["sampler"]["world_size"] == 2 and state["step"] == STEPS
