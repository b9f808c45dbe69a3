"""`echofm convert`: move weights between the public EchoFM layout and echofm's own format."""

from __future__ import annotations

import json

NAME = "convert"
HELP = "convert a model between the public EchoFM .pth layout and echofm's safetensors format"
DESCRIPTION = (
    "Read any model source (preset, echofm model directory/.safetensors, or a public EchoFM "
    "checkpoint in its trainer or release layout) and write it as an echofm model directory "
    "(safetensors + config.json) or back in the public release layout ({model, model_args})."
)


def add_arguments(p) -> None:
    p.add_argument("source", help="model source: preset name, echofm model dir/.safetensors, or public .pth")
    p.add_argument("--out", required=True, help="output path: a directory (echofm) or a .pth file (public)")
    p.add_argument("--to", choices=["echofm", "public"], default="echofm",
                   help="output layout: echofm's safetensors directory, or the public release .pth")
    p.add_argument("--encoder-only", action="store_true",
                   help="accept a source that holds only encoder weights (decoder and projector stay at init)")


def run(args) -> int:
    from echofm.model.weights import export_public, load_model, save_model

    model = load_model(args.source, encoder_only=args.encoder_only)
    if args.to == "public":
        path = export_public(model, args.out)
    else:
        path = save_model(model, args.out, metadata={"converted_from": str(args.source),
                                                      "layout": model.load_report.layout})
    print(json.dumps({"written": str(path), "source_layout": model.load_report.layout,
                      "parameters": sum(p.numel() for p in model.parameters())}))
    return 0
