"""Precision, backend and thread choice from the hardware (detection mocked both ways)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from echofm.runtime import hardware, precision
from echofm.runtime.hardware import CudaDevice, Hardware
from echofm.runtime.precision import autocast, native_bf16, resolve_precision
from echofm.runtime.threads import compute_threads, configure_threads


def machine(flags=("avx2", "fma"), cuda=()):
    return Hardware(cpu_model="test CPU", cpu_flags=tuple(flags), cpu_capability="AVX2", cores=8,
                    torch_threads=8, cuda_devices=tuple(cuda))


AVX2 = machine()
AVX512_BF16 = machine(("avx2", "fma", "avx512f", "avx512_bf16"))
AMX = machine(("avx2", "fma", "avx512f", "amx_tile", "amx_bf16"))
H100 = CudaDevice(index=0, name="NVIDIA H100", memory_gib=80.0, bf16=True)
V100 = CudaDevice(index=0, name="Tesla V100", memory_gib=16.0, bf16=False)


@pytest.fixture(autouse=True)
def fresh_warnings():
    precision._warned.clear()
    yield
    precision._warned.clear()


@pytest.mark.parametrize("hw, device, expected", [
    (AVX2, "cpu", "fp32"),
    (AVX512_BF16, "cpu", "bf16"),
    (AMX, "cpu", "bf16"),
    (machine(cuda=[H100]), "cuda", "bf16"),
    (machine(cuda=[H100]), "cuda:0", "bf16"),
    (machine(cuda=[V100]), "cuda", "fp32"),
    (machine(cuda=[H100]), "cuda:1", "fp32"),  # no such device
    (machine(cuda=[H100]), "cpu", "fp32"),  # the GPU's bf16 says nothing about the CPU
    (AMX, "cuda", "fp32"),  # no CUDA device at all
])
def test_auto_picks_bf16_only_where_native(hw, device, expected):
    assert resolve_precision("auto", device, hw) == expected


def test_fp32_is_fp32_everywhere_and_bad_names_are_refused():
    for hw in (AVX2, AMX, machine(cuda=[H100])):
        assert resolve_precision("fp32", "cpu", hw) == "fp32"
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_precision("fp16", "cpu", AVX2)


def test_explicit_bf16_without_native_support_warns_once_naming_the_reason():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert resolve_precision("bf16", "cpu", AVX2) == "bf16"
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1
    assert "AVX512_BF16" in messages[0] and "AMX" in messages[0] and "emulated" in messages[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve_precision("bf16", "cuda", machine(cuda=[V100]))
    assert len(caught) == 1 and "Tesla V100" in str(caught[0].message)


def test_explicit_bf16_on_native_hardware_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu", AMX) == "bf16"
        assert resolve_precision("bf16", "cuda", machine(cuda=[H100])) == "bf16"


def test_native_bf16_names_the_flag_it_found():
    ok, reason = native_bf16("cpu", AMX)
    assert ok and "AMX_BF16" in reason
    ok, reason = native_bf16("cuda", machine(cuda=[V100]))
    assert not ok and "compute capability 8.0" in reason


def test_detection_reads_proc_cpuinfo_and_torch(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test Xeon\nflags\t\t: fpu avx2 fma avx512f amx_tile amx_bf16\n"
                    "processor\t: 1\nmodel name\t: Test Xeon\nflags\t\t: fpu avx2\n")
    model, flags = hardware._proc_cpuinfo(info)
    assert model == "Test Xeon" and {"avx2", "amx_bf16"} <= flags
    assert hardware._proc_cpuinfo(tmp_path / "missing") == ("", set())
    # Without /proc (macOS, Windows), torch's own probes still find native bf16.
    monkeypatch.setattr(hardware, "_proc_cpuinfo", lambda path=None: ("", set()))
    monkeypatch.setattr(hardware, "_torch_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    hw = hardware.detect(refresh=True)
    try:
        assert hw.cpu_bf16 and "avx512_bf16" in hw.cpu_flags
        assert resolve_precision("auto", "cpu", hw) == "bf16"
    finally:
        hardware.detect(refresh=True)
    monkeypatch.setattr(hardware, "_torch_cpu_flags", lambda: {"avx2"})
    hw = hardware.detect(refresh=True)
    try:
        assert not hw.cpu_bf16 and resolve_precision("auto", "cpu", hw) == "fp32"
    finally:
        monkeypatch.undo()
        hardware.detect(refresh=True)


def test_autocast_resolves_auto_and_runs_bf16_only_when_asked():
    x = torch.randn(4, 8)
    w = torch.randn(8, 8)
    with autocast("fp32"):
        assert (x @ w).dtype == torch.float32
    with autocast("bf16"):
        assert (x @ w).dtype == torch.bfloat16
    with autocast("auto"):
        expected = torch.bfloat16 if resolve_precision("auto", "cpu") == "bf16" else torch.float32
        assert (x @ w).dtype == expected


def test_the_old_import_path_is_the_same_function():
    import echofm.precision as old

    assert old.resolve_precision is resolve_precision and old.autocast is autocast


def test_threads_leave_cores_to_data_workers_but_keep_half():
    assert compute_threads(0, cores=8) == 8
    assert compute_threads(2, cores=8) == 6
    assert compute_threads(8, cores=8) == 4
    assert compute_threads(4, cores=1) == 1
    before = torch.get_num_threads()
    try:
        assert configure_threads(threads=1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_doctor_reports_the_machine_and_each_commands_choice(capsys):
    from echofm.cli import main

    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    hw = hardware.detect()
    assert report["hardware"]["cores"] == hw.cores
    assert report["hardware"]["cpu_flags"] == list(hw.cpu_flags)
    choice = report["commands"]["embed"]
    assert choice["precision"] == resolve_precision("auto", "cpu")
    assert choice["backend"] == "torch"
    assert set(report["commands"]) >= {"pretrain", "finetune", "embed", "predict"}
    assert report["onnx"]["available"] in (True, False)


def test_doctor_text_names_the_precision_reason(capsys):
    from echofm.cli import main

    assert main(["doctor", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "precision auto on cpu ->" in text and native_bf16("cpu")[1] in text


@pytest.mark.parametrize("hw, fastest_embed", [(AVX2, "onnx int8"), (AMX, "torch bf16")])
def test_doctor_names_the_fastest_inference_for_the_machine(monkeypatch, hw, fastest_embed):
    from echofm.runtime import report

    monkeypatch.setattr(report, "detect", lambda refresh=False: hw)
    result = report.machine_report("cpu")
    assert result["commands"]["embed"]["fastest"].startswith(fastest_embed)
    assert result["commands"]["predict"]["fastest"].startswith(fastest_embed)
    assert result["commands"]["pretrain"]["fastest"] == f"torch {result['precision']['auto']}"  # no ONNX there
    text = report.format_report(result)
    assert ("fastest here: onnx int8" in text) == (hw is AVX2)
