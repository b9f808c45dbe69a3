"""Model-free ceilings of the label-efficiency study's clip format (48 px, 7.5 fps by default):
ED/ES from the true LV mask area and volume, EF from the sampled true volume and from the true
mask areas (calibrated), on the held-out phantoms of both sets. Prints JSON.

Usage: python benchmarks/phantom_ceilings.py [--clips 96] [--size 48] [--fps 7.5]
It says whether a supervised target the study misses (EF MAE <= 5, ED/ES within 2 frames
>= 0.9) is out of reach of the format itself or of the model; the library function is
``echofm.experiments.format_ceilings.format_ceilings``.
"""

from __future__ import annotations

import argparse
import json

from echofm.experiments.format_ceilings import format_ceilings
from echofm.experiments.label_efficiency import LabelEfficiencyConfig


def main() -> int:
    defaults = LabelEfficiencyConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=96,
                        help="A4C phantoms per held-out set (and for the EF fit; default 96)")
    parser.add_argument("--size", type=int, default=defaults.size,
                        help=f"clip size in px (default {defaults.size}, the study's)")
    parser.add_argument("--fps", type=float, default=defaults.fps,
                        help=f"clip frame rate (default {defaults.fps:g}, the study's)")
    args = parser.parse_args()
    try:
        config = LabelEfficiencyConfig(size=args.size, fps=args.fps).validate()
        result = format_ceilings(config, clips=args.clips)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
