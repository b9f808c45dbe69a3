"""ONNX export and the ONNX Runtime backend match the torch model (tiny models, fp32 and int8)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'echofm[onnx]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'echofm[onnx]')")

from echofm.config import preset  # noqa: E402
from echofm.errors import EchoFMError  # noqa: E402
from echofm.model.echofm import EchoFM, VideoEncoder  # noqa: E402
from echofm.runtime import load_inference_model  # noqa: E402
from echofm.runtime.onnx import FP32_FILE, INT8_FILE, SIDECAR, OnnxModel, export_onnx  # noqa: E402
from echofm.tasks.adapter import TaskModel, TaskSpec  # noqa: E402

CFG = preset("tiny").replace(img_size=64, num_frames=8, embed_dim=96, depth=2, num_heads=2)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest per-sample cosine similarity between two batches."""
    a, b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    return float(torch.nn.functional.cosine_similarity(a, b).min())


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return torch.rand(3, 3, CFG.num_frames, CFG.img_size, CFG.img_size, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def encoder_export(tmp_path_factory):
    torch.manual_seed(0)
    model = EchoFM(CFG).eval()
    out = tmp_path_factory.mktemp("encoder_onnx")
    export_onnx(model, out, quantize="int8", tokens=True)
    return model, out


def test_encoder_onnx_matches_torch_in_fp32_and_int8(encoder_export, clips):
    model, out = encoder_export
    with torch.inference_mode():
        want = model.embed(clips)
    fp32, int8 = OnnxModel(out).embed(clips), OnnxModel(out, quantized=True).embed(clips)
    measured = {}
    for part in ("video", "frames", "tokens"):
        ref = getattr(want, part)
        assert getattr(fp32, part).shape == ref.shape
        measured[part] = (cosine(ref, getattr(fp32, part)), cosine(ref, getattr(int8, part)))
    print("encoder cosine to torch fp32 (onnx fp32, onnx int8):", measured)
    for part, (c32, c8) in measured.items():
        assert c32 >= 0.999, part
        assert c8 >= 0.99, part
    # The int8 copy really is another model: its outputs are close but not identical.
    assert not torch.equal(fp32.video, int8.video)


def test_int8_weights_use_seven_bits(encoder_export):
    """The int8 copy's weights stay within 7 bits (reduce_range): CPUs without VNNI saturate
    int16 sums of full-range int8 weights (cosine 0.966 on echofm-small, AVX2)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    _, out = encoder_export
    graph = onnx.load(str(out / INT8_FILE)).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 4  # qkv, proj, fc1, fc2 of each block at least
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) >= 60  # the 7 bits are used


def test_the_batch_axis_is_dynamic_and_wrong_shapes_are_refused(encoder_export, clips):
    model, out = encoder_export
    onnx_model = OnnxModel(out)
    with torch.inference_mode():
        want = model.embed(clips[:1]).video
    assert cosine(want, onnx_model.embed(clips[:1]).video) >= 0.999
    assert onnx_model(clips).shape == (3, CFG.embed_dim)
    with pytest.raises(ValueError, match=r"clips must be \[N, 3, 8, 64, 64\], got \[3, 3, 4, 64, 64\]"):
        onnx_model.embed(clips[:, :, :4])


def test_sidecar_states_the_input_contract_and_outputs(encoder_export):
    _, out = encoder_export
    info = json.loads((out / SIDECAR).read_text())
    assert info["kind"] == "encoder" and info["opset"] == 17
    assert info["files"] == {"fp32": FP32_FILE, "int8": INT8_FILE}
    assert (out / FP32_FILE).is_file() and (out / INT8_FILE).is_file()
    contract = info["contract"]
    assert (contract["num_frames"], contract["img_size"], contract["channels"]) == (8, 64, 3)
    assert contract["intensity"] == "[0, 1]"
    assert info["inputs"][0]["shape"] == ["N", 3, 8, 64, 64]
    T, L, D = CFG.t_grid_size, CFG.num_spatial, CFG.embed_dim
    assert info["outputs"] == [{"name": "video", "shape": ["N", D]}, {"name": "frames", "shape": ["N", T, D]},
                               {"name": "tokens", "shape": ["N", T * L, D]}]
    from echofm import __version__

    assert info["echofm_version"] == __version__
    import onnx

    onnx.checker.check_model(str(out / FP32_FILE))


@pytest.mark.parametrize("spec", [
    TaskSpec(task="view", kind="multiclass", classes=["a4c", "a2c", "plax"]),
    TaskSpec(task="segment", kind="segmentation", classes=["background", "lv_cavity"]),
], ids=["classification", "segmentation"])
def test_task_model_onnx_matches_torch(spec, clips, tmp_path):
    torch.manual_seed(0)
    model = TaskModel(VideoEncoder(CFG), spec, "linear").eval()
    export_onnx(model, tmp_path, quantize="int8")
    with torch.inference_mode():
        want = model(clips)
    fp32 = load_inference_model(tmp_path, backend="onnx", kind="task")
    int8 = load_inference_model(tmp_path, backend="onnx", kind="task", quantized=True)
    got32, got8 = fp32(clips), int8(clips)
    assert got32.shape == want.shape
    c32, c8 = cosine(want, got32), cosine(want, got8)
    print(f"{spec.kind} head cosine to torch fp32: onnx fp32 {c32:.6f}, onnx int8 {c8:.6f}")
    assert c32 >= 0.999 and c8 >= 0.99
    # The predict path reads the task's description from the export, as from task.json.
    assert fp32.spec == model.spec and fp32.cfg == model.cfg


def test_regression_values_match(clips, tmp_path):
    torch.manual_seed(0)
    spec = TaskSpec(task="ef", kind="regression", target="ef", target_mean=55.0, target_std=10.0)
    model = TaskModel(VideoEncoder(CFG), spec, "linear").eval()
    export_onnx(model, tmp_path)
    with torch.inference_mode():
        want = model(clips)
    got = OnnxModel(tmp_path)(clips)
    assert got.shape == want.shape == (3,)
    assert torch.allclose(got, want, atol=1e-3)


def test_backend_switch_refuses_what_it_cannot_run(encoder_export, tmp_path):
    _, out = encoder_export
    with pytest.raises(EchoFMError, match="echofm export --format onnx"):
        load_inference_model(tmp_path, backend="onnx")
    with pytest.raises(EchoFMError, match="exported encoder model, but this command needs a task model"):
        load_inference_model(out, backend="onnx", kind="task")
    with pytest.raises(ValueError, match="backend must be one of torch, onnx"):
        load_inference_model(out, backend="tensorrt")
    (tmp_path / SIDECAR).write_text(json.dumps({"format": "echofm-onnx/1", "kind": "encoder", "files": {"fp32": FP32_FILE},
                                                "config": CFG.to_dict(), "outputs": []}))
    with pytest.raises(EchoFMError, match=f"{FP32_FILE}: missing"):
        OnnxModel(tmp_path)
    with pytest.raises(EchoFMError, match="no int8 model"):
        OnnxModel(tmp_path, quantized=True)


def test_a_missing_onnx_extra_is_named(monkeypatch):
    import importlib

    from echofm.runtime import onnx as runtime_onnx

    real = importlib.import_module

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_onnxruntime)
    with pytest.raises(EchoFMError, match=r"pip install 'echofm\[onnx\]'"):
        runtime_onnx.require("onnxruntime")


def test_export_command_writes_an_encoder_that_embeds_like_torch(tmp_path, clips, capsys):
    from echofm.cli import main
    from echofm.model import load_model, save_model

    torch.manual_seed(0)
    save_model(EchoFM(CFG), tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["kind"] == "encoder" and set(report["files"]) == {"fp32"}
    torch_model = load_inference_model(tmp_path / "model")
    onnx_model = load_inference_model(tmp_path / "onnx", backend="onnx")
    with torch.inference_mode():
        want = torch_model.embed(clips)
    got = onnx_model.embed(clips)
    assert got.tokens is None
    assert cosine(want.frames, got.frames) >= 0.999
    assert load_model(tmp_path / "model").cfg == onnx_model.cfg


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    from echofm.phantom import PhantomConfig, generate_case
    from echofm.phantom.export import write_video

    root = tmp_path_factory.mktemp("onnx_studies")
    case = generate_case(3, PhantomConfig(size=64, num_frames=20, views=("A4C",)))
    write_video(root / "phantom.mp4", case.frames, case.fps, "libx264")
    return root


def test_embed_backend_onnx_writes_what_torch_writes(tmp_path, study_folder, capsys):
    import numpy as np

    from echofm.cli import main
    from echofm.model import save_model

    torch.manual_seed(0)
    save_model(EchoFM(CFG), tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--out", str(tmp_path / "onnx"), "--quantize", "int8"]) == 0
    runs = {"torch": ["--model", str(tmp_path / "model")],
            "onnx": ["--model", str(tmp_path / "onnx"), "--backend", "onnx"],
            "int8": ["--model", str(tmp_path / "onnx" / INT8_FILE), "--backend", "onnx"]}
    videos = {}
    for name, flags in runs.items():
        out = tmp_path / f"embedded_{name}"
        assert main(["embed", str(study_folder), "--out", str(out), "--quiet", "--precision", "fp32", *flags]) == 0
        (video,) = sorted(out.glob("*_video.npy"))
        (frames,) = sorted(out.glob("*_frames.npy"))
        videos[name] = (torch.from_numpy(np.load(video)), torch.from_numpy(np.load(frames)))
    ref_video, ref_frames = videos["torch"]
    for name in ("onnx", "int8"):
        video, frames = videos[name]
        assert frames.shape == ref_frames.shape
        bar = 0.999 if name == "onnx" else 0.99
        assert cosine(ref_video[None], video[None]) >= bar and cosine(ref_frames.flatten(0, 1), frames.flatten(0, 1)) >= bar
    # A folder embedded by torch is not resumed with another backend's model.
    capsys.readouterr()
    assert main(["embed", str(study_folder), "--out", str(tmp_path / "embedded_torch"), "--quiet", "--precision",
                 "fp32", *runs["onnx"]]) == 2
    assert "different model or settings" in capsys.readouterr().err
    with pytest.raises(EchoFMError, match="--tokens"):
        from echofm.embed import EmbedConfig, embed_studies

        embed_studies([study_folder], tmp_path / "onnx", tmp_path / "tok", EmbedConfig(tokens=True, backend="onnx"))


def test_predict_backend_onnx_gives_the_torch_prediction(tmp_path, study_folder):
    from echofm.cli import main
    from echofm.tasks.adapter import save_task_model

    torch.manual_seed(0)
    spec = TaskSpec(task="view", kind="multiclass", classes=["A4C", "A2C", "PLAX"])
    save_task_model(TaskModel(VideoEncoder(CFG), spec, "linear").eval(), tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "onnx")]) == 0
    records = {}
    for name, flags in {"torch": ["--model", str(tmp_path / "run")],
                        "onnx": ["--model", str(tmp_path / "onnx"), "--backend", "onnx"]}.items():
        out = tmp_path / f"predicted_{name}"
        assert main(["predict", str(study_folder), "--out", str(out), "--quiet", "--precision", "fp32", *flags]) == 0
        (path,) = out.glob("*.json")
        records[name] = json.loads(path.read_text())
    want, got = records["torch"]["prediction"], records["onnx"]["prediction"]
    assert got["label"] == want["label"] and records["onnx"]["windows"] == records["torch"]["windows"]
    for cls in spec.classes:
        assert got["probabilities"][cls] == pytest.approx(want["probabilities"][cls], abs=1e-4)
