"""`echofm bundle`: assemble a model bundle from fine-tuning runs, or train one on phantoms."""

from __future__ import annotations

import json

NAME = "bundle"
HELP = "make a model bundle for `echofm study`: from fine-tuning runs (create) or trained on phantoms (phantom)"
DESCRIPTION = (
    "A bundle is a folder with bundle.json naming its task models (view; LV segmentation and/or EF; disease), "
    "each with its input contract, training data summary and metrics. `create` copies the models of finished "
    "`echofm finetune` runs and checks that each loads and does its role's task; `phantom` trains a complete "
    "demonstration bundle on phantoms (not a clinical model).")


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                           help="create: assemble from fine-tuning runs; phantom: train on phantoms")
    c = sub.add_parser("create", help="assemble a bundle from fine-tuning runs")
    c.add_argument("--view", required=True, metavar="RUN", help="view classification run (echofm finetune --task view)")
    c.add_argument("--segment", metavar="RUN", help="LV segmentation run (--task segment; class 1 = LV cavity)")
    c.add_argument("--ef", metavar="RUN", help="EF regression run (--task ef)")
    c.add_argument("--disease", metavar="RUN", help="disease run (--task disease), applied to parasternal views")
    c.add_argument("--name", default="echofm bundle", help="bundle name shown in reports")
    c.add_argument("--card", default="", help="what the bundle is for and its limits (shown in every report)")
    c.add_argument("--out", required=True, help="bundle folder to write")
    ph = sub.add_parser("phantom", help="train a complete demonstration bundle on phantoms (minutes on a CPU)")
    ph.add_argument("--out", required=True, help="bundle folder to write")
    ph.add_argument("--clips-per-view", type=int, default=48, help="phantom clips generated per view and task")
    ph.add_argument("--epochs", type=int, default=12, help="training epochs of every probe")
    ph.add_argument("--init", default=None,
                    help="encoder to adapt (a saved echofm model, e.g. runs/pt/model); default: a small random one")
    ph.add_argument("--seed", type=int, default=0, help="random seed (phantoms, initialisation)")
    ph.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from echofm.study.bundle import PhantomBundleConfig, create_bundle, load_bundle, phantom_bundle

    if args.action == "create":
        out = create_bundle(args.out, {"view": args.view, "segment": args.segment, "ef": args.ef,
                                       "disease": args.disease}, name=args.name, card=args.card)
    else:
        out = phantom_bundle(args.out, PhantomBundleConfig(clips_per_view=args.clips_per_view, epochs=args.epochs,
                                                           seg_epochs=args.epochs, init=args.init, seed=args.seed,
                                                           progress=not args.quiet))
    bundle = load_bundle(out)
    print(json.dumps({"bundle": str(out), "models": {r: e.get("metrics", {}).get("main_metric")
                                                    for r, e in bundle.manifest["models"].items()}}, indent=2))
    return 0
