"""Command-line start time: `echofm --help` and every `echofm COMMAND --help`, printed as JSON.

Usage: python benchmarks/cli_start.py [--repeats N]
Each figure is the median wall time of N fresh interpreter runs (`python -m echofm ...
--help`), next to the median time of `python -c "import torch"` on the same machine for
comparison; `python -c pass` gives the interpreter's own start. Machine-dependent: the
JSON names the CPU flags.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def _seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def _cpu() -> tuple[str, list[str]]:
    """The CPU's model name and its vector flags that matter for speed (Linux; else the platform's name)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or platform.machine(), []
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.machine())
    return name, sorted(set(text.split()) & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5, help="runs per figure (the median is kept)")
    a = p.parse_args()
    from echofm.cli import build_parser

    parser = build_parser()
    commands = sorted(next(x for x in parser._actions if x.dest == "command").choices)
    echofm = [sys.executable, "-m", "echofm"]
    cpu, flags = _cpu()
    result = {
        "cpu": cpu, "cpu_flags": flags, "cpus": os.cpu_count(),
        "repeats": a.repeats,
        "python_start_s": _seconds([sys.executable, "-c", "pass"], a.repeats),
        "import_torch_s": _seconds([sys.executable, "-c", "import torch"], a.repeats),
        "echofm_help_s": _seconds(echofm + ["--help"], a.repeats),
        "command_help_s": {name: _seconds(echofm + [name, "--help"], a.repeats) for name in commands},
    }
    result["slowest_command_help_s"] = max(result["command_help_s"].values())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
