"""Tiny end-to-end adaptation runs: loss goes down, runs resume, evaluate writes metrics and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from echofm.cli import main
from echofm.datasets import read_dataset
from echofm.errors import EchoFMError
from echofm.tasks import evaluate, finetune, load_task_model
from echofm.tasks.engine import FinetuneConfig
from tests._downstream import save_tiny_model, write_toy_manifest


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_toy_manifest(root / "data")
    save_tiny_model(root / "init")
    return root


def test_ef_linear_probe_learns_and_evaluate_writes_metrics(toy, tmp_path):
    data = read_dataset("csv", toy / "data", task="ef", target="label")
    cfg = FinetuneConfig(task="ef", mode="linear", target="label", epochs=12, batch_size=4, blr=2.0, warmup_epochs=0,
                         weight_decay=0.0, progress=False)
    result = finetune(data, toy / "init", cfg, tmp_path / "run")
    losses = [h["train_loss"] for h in result.history]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2])
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 12 and "val" in json.loads(lines[0])
    assert list((tmp_path / "run" / "checkpoints").glob("step-*.pt")) and (tmp_path / "run" / "task.json").exists()
    metrics = evaluate(tmp_path / "run", data, split="test", out_dir=tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["task"] == "ef" and saved["video"]["n"] == 2 and saved["clip"]["n"] >= 2
    assert metrics["video"]["mae"] == pytest.approx(saved["video"]["mae"])
    assert (tmp_path / "eval" / "label_scatter_bland_altman.png").stat().st_size > 1000
    model = load_task_model(tmp_path / "run")
    assert model.spec.kind == "regression" and model.mode == "linear"


def test_run_is_not_overwritten_and_resumes_after_an_interruption(toy, tmp_path, monkeypatch):
    data = read_dataset("csv", toy / "data", task="view", target="view")
    cfg = FinetuneConfig(task="view", mode="attentive", target="view", epochs=2, batch_size=6, progress=False)
    from echofm.tasks.classification import ClassificationTask

    original, calls = ClassificationTask.loss, {"n": 0}

    def failing_loss(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 3:  # second epoch (2 steps per epoch)
            raise KeyboardInterrupt
        return original(self, model, batch)

    monkeypatch.setattr(ClassificationTask, "loss", failing_loss)
    with pytest.raises(KeyboardInterrupt):
        finetune(data, toy / "init", cfg, tmp_path / "run")
    monkeypatch.setattr(ClassificationTask, "loss", original)
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    with pytest.raises(EchoFMError, match="holds a run already"):
        finetune(data, toy / "init", cfg, tmp_path / "run")
    with pytest.raises(EchoFMError, match="different configuration"):
        finetune(data, toy / "init", FinetuneConfig(**{**cfg.__dict__, "lr": 0.1}), tmp_path / "run", resume=True)
    result = finetune(data, toy / "init", cfg, tmp_path / "run", resume=True)
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2] and [h["epoch"] for h in result.history] == [2]


def test_cli_finetune_and_evaluate_multilabel_disease(toy, tmp_path, capsys):
    rc = main(["finetune", "--task", "disease", "--data", str(toy / "data"), "--format", "csv", "--init",
               str(toy / "init"), "--mode", "linear", "--out", str(tmp_path / "run"), "--target", "findings",
               "--labels", "multilabel", "--epochs", "1", "--batch-size", "6", "--label-fraction", "0.5",
               "--no-progress"])
    assert rc == 0
    run_info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert set(run_info["spec"]["classes"]) <= {"dilated", "normal", "reduced_ef"}
    assert run_info["data"]["train"] < 12  # label fraction 0.5 of 12 training videos
    rc = main(["evaluate", "--model", str(tmp_path / "run"), "--split", "all", "--out", str(tmp_path / "eval")])
    assert rc == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["task"] == "disease" and "auroc" in metrics["video"] and metrics["samples"] == 16
    assert (tmp_path / "eval" / "predictions.jsonl").exists()
    # A bad option value is one clear line and a non-zero exit.
    rc = main(["evaluate", "--model", str(tmp_path / "nothing"), "--data", str(toy / "data"), "--format", "csv",
               "--out", str(tmp_path / "e2")])
    assert rc == 2 and "no task.json" in capsys.readouterr().err


def test_finetune_and_evaluate_compares_inits_in_a_few_lines(toy, tmp_path):
    from echofm.tasks import finetune_and_evaluate

    data = read_dataset("csv", toy / "data", task="view", target="view")
    cfg = FinetuneConfig(task="view", target="view", epochs=1, batch_size=6, progress=False, validate=False)
    scores = {name: finetune_and_evaluate(data, init, cfg, tmp_path / name)["main_metric"]
              for name, init in {"saved": toy / "init", "random": toy / "init"}.items()}
    assert scores["saved"]["name"] == "video.balanced_accuracy"
    assert scores["saved"]["value"] == pytest.approx(scores["random"]["value"])  # same init, same seed
    assert (tmp_path / "saved" / "eval" / "metrics.json").exists()


def test_cli_view_classification_confusion_and_roc(toy, tmp_path):
    assert main(["finetune", "--task", "view", "--data", str(toy / "data" / "manifest.csv"), "--format", "csv",
                 "--target", "view", "--init", str(toy / "init"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--no-progress", "--no-validate"]) == 0
    assert main(["evaluate", "--model", str(tmp_path / "run"), "--split", "all", "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["video"]) >= {"accuracy", "balanced_accuracy", "macro_f1", "auroc", "confusion_matrix"}
    assert (tmp_path / "eval" / "view_confusion_matrix.png").exists()
    assert (tmp_path / "eval" / "view_roc.png").exists()
