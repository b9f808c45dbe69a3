"""`echofm info`: describe a model source (configuration, size, layout, key report, hub origin)."""

from __future__ import annotations

import json

NAME = "info"
HELP = "print a model's configuration, parameter count and checkpoint layout as JSON"


def add_arguments(p) -> None:
    p.add_argument("source", help="preset name (e.g. echofm-tiny), echofm model dir/.safetensors, public .pth, "
                                  "or hf:ORG/NAME[@REVISION][/FILE] (reports repository, commit and cached file)")
    p.add_argument("--encoder-only", action="store_true", help="accept an encoder-only checkpoint")


def run(args) -> int:
    from echofm.model.weights import load_model

    model = load_model(args.source, encoder_only=args.encoder_only)
    report = model.load_report
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(json.dumps({
        "source": str(args.source), "layout": report.layout,
        "parameters": {"total": count(model), "encoder": count(model.encoder),
                       "projector": count(model.projector), "decoder": count(model.decoder)},
        "missing_keys": report.missing, "unexpected_keys": report.unexpected,
        **({"hub": report.hub} if report.hub else {}),
        "config": model.cfg.to_dict(),
    }, indent=2))
    return 0
