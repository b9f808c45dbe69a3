"""The one training loop: shared by pretraining and fine-tuning, exact accumulation and resume,
one LR rule, gradient clipping, and fine-tuning runs of the earlier code still resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from echofm.datasets import phantom_task_dataset
from echofm.phantom import PhantomConfig
from echofm.tasks.engine import FinetuneConfig
from echofm.tasks.finetuning import LEGACY_CHECKPOINT, LEGACY_CHECKPOINT_FORMAT, finetune
from echofm.train import checkpoint as ckpt
from echofm.train import loop
from echofm.train.distributed import DistContext
from tests._downstream import save_tiny_model
from tests.test_pretrain import PeriodicClips, max_weight_difference, run_config


class Pairs(Dataset):
    """Item i: {"x": [4] features, "y": [2] targets}, fixed by i (a linear map plus noise)."""

    def __init__(self, count: int, scale: float = 1.0):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(count, 4, generator=g)
        self.y = scale * (self.x @ torch.randn(4, 2, generator=g) + 0.1 * torch.randn(count, 2, generator=g))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


def mse_step(module, batch, indices, epoch) -> dict:
    return {"loss": torch.nn.functional.mse_loss(module(batch["x"]), batch["y"])}


def train_pairs(tmp: Path | None, data: Dataset, **kw) -> tuple[torch.nn.Module, loop.LoopResult]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    # fp32: the equalities below are float32 summation order (auto is bf16 on a CPU with AMX).
    settings = dict(name="toy", epochs=3, batch_size=6, blr=0.5, warmup_steps=0, weight_decay=0.0, precision="fp32",
                    drop_last=False, progress=False, metrics_per="epoch", checkpoint_each_epoch=True)
    result = loop.run_loop(loop.LoopConfig(**{**settings, **kw}), DistContext(), model, data, mse_step, run_dir=tmp)
    return model, result


@pytest.fixture
def single_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


def views():
    """16 phantom clips (32 px, 12 frames): 8 train, 4 val, 4 test."""
    return phantom_task_dataset(16, PhantomConfig(size=32, num_frames=12, fps=7.5), seed=5, splits=(0.5, 0.25, 0.25))


def view_config(**kw) -> FinetuneConfig:
    # fp32: the equality bounds are about fp32 summation order; "auto" is bf16 on a CPU with native bf16.
    return FinetuneConfig(**{**dict(task="view", mode="full", epochs=2, batch_size=4, blr=2e-2, warmup_epochs=0.5,
                                    precision="fp32", progress=False), **kw})


def task_weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


# --- one loop, one LR rule ------------------------------------------------------------------

def test_pretraining_and_finetuning_run_the_same_loop_with_the_same_lr_rule(tmp_path, monkeypatch, single_process):
    from echofm.train.pretrain import pretrain

    calls = []
    real = loop.run_loop

    def recording(cfg, *a, **kw):
        result = real(cfg, *a, **kw)
        calls.append((cfg.name, result.effective_batch, result.peak_lr, [h["lr"] for h in result.history]))
        return result

    monkeypatch.setattr(loop, "run_loop", recording)
    # Effective batch 8 both ways: 2 clips x 4 micro-batches (pretraining), 4 x 2 (fine-tuning).
    pretrain(run_config(tmp_path / "pre", batch_size=2, accum_steps=4, steps=2, blr=3e-3, warmup_steps=0),
             dataset=PeriodicClips(16))
    finetune(views(), save_tiny_model(tmp_path / "init"), view_config(epochs=1, batch_size=4, accum_steps=2,
                                                                      blr=3e-3, warmup_epochs=0), tmp_path / "ft")
    assert [c[0] for c in calls] == ["pretrain", "finetune"]
    (_, batch_pre, lr_pre, steps_pre), (_, batch_ft, lr_ft, steps_ft) = calls
    assert batch_pre == batch_ft == 8
    assert lr_pre == lr_ft == pytest.approx(3e-3 * 8 / 256)
    assert steps_pre[0] == steps_ft[0] == lr_pre  # no warm-up: the first step trains at the peak
    # The fine-tuning default keeps the rate of the earlier batch / 64 rule: linear probe,
    # batch 8: 1e-2 x 8 / 64.
    assert FinetuneConfig(task="view").peak_lr() == pytest.approx(1e-2 * 8 / 64)


# --- gradient accumulation -----------------------------------------------------------------

def test_accumulated_micro_batches_equal_one_large_batch_even_with_a_short_last_step(tmp_path):
    """3 micro-batches of 2 == one batch of 6 per step; 10 items: steps of 6 and 4 items."""
    data = Pairs(10)
    big, big_run = train_pairs(tmp_path / "big", data, batch_size=6)
    acc, acc_run = train_pairs(tmp_path / "acc", data, batch_size=2, accum_steps=3)
    assert big_run.steps_per_epoch == acc_run.steps_per_epoch == 2
    for x, y in zip(big_run.history, acc_run.history):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6)
    for a, b in zip(big.state_dict().values(), acc.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert any(h["loss"] > big_run.history[-1]["loss"] for h in big_run.history)  # it trained


def test_finetuning_accumulation_matches_the_larger_batch(tmp_path, single_process):
    init = save_tiny_model(tmp_path / "init")
    finetune(views(), init, view_config(batch_size=4, validate=False), tmp_path / "big")
    finetune(views(), init, view_config(batch_size=2, accum_steps=2, validate=False), tmp_path / "acc")
    a, b = task_weights(tmp_path / "big"), task_weights(tmp_path / "acc")
    assert max_weight_difference(a, b) < 1e-5


# --- resume -------------------------------------------------------------------------------

def test_finetuning_resumed_mid_epoch_repeats_the_uninterrupted_run(tmp_path, single_process):
    """2 epochs of 2 steps, validated each epoch: stop after step 3, resume: same weights,
    same records, the best epoch carried over."""
    init = save_tiny_model(tmp_path / "init")
    straight = finetune(views(), init, view_config(), tmp_path / "a")
    first = finetune(views(), init, view_config(), tmp_path / "b", stop_after=3)
    assert [h["epoch"] for h in first.history] == [1]
    second = finetune(views(), init, view_config(), tmp_path / "b", resume=True)
    assert [h["epoch"] for h in second.history] == [2]
    a, b = task_weights(tmp_path / "a"), task_weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    assert [r["train_loss"] for r in lines] == [r["train_loss"] for r in straight.history]
    assert second.best == straight.best


def test_a_finetuning_checkpoint_of_the_earlier_code_still_resumes(tmp_path, single_process):
    """The earlier engine wrote RUN/checkpoint.pt at each epoch's end (format
    echofm-finetune-checkpoint/1, its ``lr`` the base rate of the batch / 64 rule)."""
    init = save_tiny_model(tmp_path / "init")
    straight = finetune(views(), init, view_config(), tmp_path / "a")
    finetune(views(), init, view_config(), tmp_path / "old", stop_after=2)  # epoch 1 done
    ckdir = tmp_path / "old" / "checkpoints"
    _, state = ckpt.latest_good_checkpoint(ckdir)
    run_info = state["config"]
    old_finetune = {k: v for k, v in run_info["finetune"].items()
                    if k not in ("blr", "accum_steps", "clip_grad", "compile")}
    old_finetune["lr"] = run_info["finetune"]["blr"] / 4  # 2e-2 / 256 == 5e-3 / 64
    legacy = {"format": LEGACY_CHECKPOINT_FORMAT, "model": state["model"], "optimizer": state["optimizer"],
              "epoch": 1, "best": json.dumps(json.loads(state["extra"])["best"]), "rng": state["rng"],
              "run_info": json.dumps({**run_info, "finetune": old_finetune})}
    torch.save(legacy, tmp_path / "old" / LEGACY_CHECKPOINT)
    for path in ckdir.iterdir():
        path.unlink()
    resumed = finetune(views(), init, view_config(), tmp_path / "old", resume=True)
    assert [h["epoch"] for h in resumed.history] == [2]
    a, b = task_weights(tmp_path / "a"), task_weights(tmp_path / "old")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.best == straight.best


def test_a_pretraining_checkpoint_of_the_earlier_format_still_resumes(tmp_path):
    from echofm.train.pretrain import pretrain

    data = PeriodicClips(16)
    pretrain(run_config(tmp_path / "run"), dataset=data, stop_after=3)
    path = ckpt.checkpoint_path(tmp_path / "run" / "checkpoints", 3)
    state = torch.load(path, weights_only=True)
    state["format"] = "echofm-pretrain-checkpoint/1"
    for key in ("epoch_sums", "extra"):  # the earlier code did not write them
        state.pop(key)
    torch.save(state, path)
    resumed = pretrain(run_config(tmp_path / "run"), dataset=data, resume="auto")
    assert [h["step"] for h in resumed.history] == [4, 5, 6] and resumed.model_dir is not None


# --- clipping -------------------------------------------------------------------------------

def test_clip_grad_caps_the_norm_the_optimiser_sees(tmp_path, monkeypatch):
    seen = []
    real_step = torch.optim.AdamW.step

    def recording_step(self, *a, **kw):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    data = Pairs(12, scale=100.0)  # large targets: gradient norms in the hundreds
    _, clipped = train_pairs(None, data, epochs=1, clip_grad=0.5)
    assert all(h["grad_norm"] > 10 for h in clipped.history)  # the norm before clipping is logged
    assert seen and all(n <= 0.5 * (1 + 1e-5) for n in seen)
    seen.clear()
    _, free = train_pairs(None, data, epochs=1, clip_grad=0.0)
    assert seen == pytest.approx([h["grad_norm"] for h in free.history], rel=1e-5)


# --- progress -----------------------------------------------------------------------------

def test_progress_lines_give_percent_rate_and_eta(tmp_path, capsys):
    train_pairs(tmp_path / "run", Pairs(12), epochs=2, progress=True, print_every=1)
    err = capsys.readouterr().err
    last = [line for line in err.splitlines() if line.startswith("toy step")][-1]
    assert last.startswith("toy step 4/4 (100%)") and "steps/s" in last and "eta=0s" in last
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all("train_loss" in r for r in records)
