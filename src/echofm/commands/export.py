"""`echofm export`: a model as ONNX with a JSON sidecar of its input contract."""

from __future__ import annotations

import json

NAME = "export"
HELP = "export a model (encoder + projector, or a fine-tuned task model) to ONNX for ONNX Runtime"
DESCRIPTION = (
    "Writes DIR/model.onnx and DIR/onnx.json (the input contract: frames, image size, channels, intensity; "
    "output names and shapes; opset; echofm version). MODEL is a fine-tuned run folder (exports the task "
    "model with its head: logits, values or segmentation logits) or anything --model accepts elsewhere "
    "(preset, echofm model folder, public EchoFM checkpoint: exports the encoder with the projector, whose "
    "outputs are the video embedding [N, D] and the per-step embeddings [N, T, D]). The batch axis is "
    "dynamic. Run it with `echofm embed/predict --backend onnx --model DIR`. Needs the onnx extra: "
    "pip install 'echofm[onnx]'.")


def add_arguments(p) -> None:
    from echofm.choices import EXPORT_FORMATS, QUANTIZATIONS

    p.add_argument("model", metavar="MODEL", help="fine-tuned run folder, preset, echofm model folder or public .pth")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="export format")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                   help="also write model.int8.onnx: int8 weights, activations quantised per call (dynamic)")
    p.add_argument("--tokens", action="store_true", help="encoder: also output the token embeddings [N, T*L, D]")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")


def run(args) -> int:
    from echofm.runtime.onnx import export_source

    result = export_source(args.model, args.out, quantize=args.quantize, tokens=args.tokens, opset=args.opset)
    print(json.dumps({"out": str(result.out_dir), "kind": result.sidecar["kind"],
                      "files": {k: str(v) for k, v in result.files.items()},
                      "outputs": result.sidecar["outputs"]}))
    return 0
