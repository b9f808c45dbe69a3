"""`echofm convert`: move weights between the public EchoFM layout, echofm's own format and a Hub folder."""

from __future__ import annotations

import json

NAME = "convert"
HELP = "convert a model between the public EchoFM .pth layout, echofm's safetensors format and a Hub folder"
DESCRIPTION = (
    "Read any model source (preset, echofm model directory/.safetensors, a public EchoFM "
    "checkpoint in its trainer or release layout, or hf:ORG/NAME[@REVISION][/FILE]) and write it "
    "as an echofm model directory (safetensors + config.json), back in the public release layout "
    "({model, model_args}), or as a folder ready to upload to the Hugging Face Hub "
    "(model.safetensors, config.json, README.md model card; a pretraining run directory as "
    "source puts its training data and final metrics in the card)."
)


def add_arguments(p) -> None:
    p.add_argument("source", help="model source: preset name, echofm model dir/.safetensors, public .pth, "
                                  "hf:ORG/NAME[@REVISION][/FILE], or (with --to hub) a pretraining run directory")
    p.add_argument("--out", required=True, help="output path: a directory (echofm, hub) or a .pth file (public)")
    p.add_argument("--to", choices=["echofm", "public", "hub"], default="echofm",
                   help="output layout: echofm's safetensors directory, the public release .pth, "
                        "or a Hugging Face Hub folder with a model card")
    p.add_argument("--encoder-only", action="store_true",
                   help="accept a source that holds only encoder weights (decoder and projector stay at init)")


def run(args) -> int:
    if args.to == "hub":
        from echofm.publish import export_hub_folder

        folder = export_hub_folder(args.source, args.out, encoder_only=args.encoder_only)
        print(json.dumps(folder.to_dict()))
        return 0
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
