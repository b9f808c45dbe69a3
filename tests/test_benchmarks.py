"""The benchmark scripts run end to end at toy size, so they cannot rot (no speed asserted here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_on_cpu_at_toy_size(capsys):
    gpu_check = load("gpu_check")
    report = gpu_check.main(["--device", "cpu", "--preset", "echofm-tiny", "--steps", "1", "--max-batch", "2",
                             "--workers", "2", "--cache-clips", "4", "--loader-batch", "2", "--loader-epochs", "2",
                             "--no-compile"])
    assert report["preset"] == "echofm-tiny" and report["train_gflop_per_clip"] > 0
    eager = report["training"][0]
    assert eager["config"] == "eager" and eager["batch"] == 2 and eager["clips_per_s"] > 0
    assert 0 < eager["mfu_vs_measured_matmul"]
    checkpointed = report["training"][1]
    assert checkpointed["config"] == "eager + checkpointing" and checkpointed["batch"] == 2
    assert all("skipped" in r for r in report["training"][2:])  # compile is off on CPU
    assert report["embedding"]["batch"] == 2 and report["embedding"]["clips_per_s"] > 0
    loader = report["data_loader"]
    assert loader["cache_clips"] == 4 and loader["workers"] == 2 and loader["clips_per_s"] > 0
    assert '"best_mfu"' in capsys.readouterr().out


def test_model_speed_goal_table_reads_the_small_preset():
    speed = load("model_speed")
    runs = [{"preset": "echofm-small", "label": "torch-fp32",
             "train": {"clips_per_s": 7.0, "peak_memory_mib": 900.0}, "embed": {"clips_per_s": 10.0, "cosine_to_torch_fp32": 1.0},
             "vs_public_code": {"train_vs_public": 1.6, "train_peak_memory_vs_public": 0.77, "embed_vs_public": 1.4}},
            {"preset": "echofm-small", "label": "onnx-int8", "embed": {"clips_per_s": 30.0, "cosine_to_torch_fp32": 0.98},
             "vs_public_code": {"embed_vs_public": 4.0}},
            {"preset": "echofm-small", "label": "torch-bf16", "train": {"clips_per_s": 9.0},
             "embed": {"clips_per_s": 20.0, "cosine_to_torch_fp32": 0.999},
             "vs_public_code": {"train_vs_public": 1.9, "embed_vs_public": 3.1}}]
    goals = speed.goals(runs, native_bf16=True)
    assert goals["train_fp32_vs_public"]["met"] and goals["peak_memory_vs_public"]["met"]
    # int8 is faster but below the cosine bar, so bf16 is the best admissible backend.
    assert goals["embed_best_vs_public"]["backend"] == "torch-bf16" and goals["embed_best_vs_public"]["met"]
    assert not goals["train_bf16_vs_public"]["met"]
    assert speed.goals(runs, native_bf16=False)["embed_best_vs_public"]["goal"] == 2.0


def test_train_profile_groups_a_step_by_operator_class(capsys):
    profile = load("train_profile")
    assert profile.op_class("aten::addmm") == "matmul" and profile.op_class("aten::_fused_adamw_") == "optimizer"
    assert profile.op_class("aten::gelu_backward") == "elementwise_and_norm"
    assert profile.op_class("aten::copy_") == "data_movement"
    assert profile.op_class("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    report = profile.main(["--preset", "echofm-tiny", "--batch", "1", "--steps", "1", "--threads", "1",
                           "--precision", "fp32"])
    [run] = report["runs"]
    assert run["mode"] == "train" and run["threads"] == 1 and run["clips_per_s"] > 0
    assert abs(sum(run["by_class_share"].values()) - 1.0) < 0.01
    assert run["by_class_ms"]["matmul"] > 0 and run["by_class_ms"]["optimizer"] > 0
    assert '"by_class_share"' in capsys.readouterr().out
