#!/usr/bin/env bash
# The exact commands that made echofm-tiny-phantom, the reference model shipped in this folder.
#
#   bash recipe.sh WORKDIR
#
# WORKDIR receives the pretraining run; the last step writes WORKDIR/echofm-tiny-phantom/
# (echofm-tiny-phantom.safetensors in float16, config.yaml, metrics.jsonl): the files shipped
# here. Pretraining reads 2048 phantom clips made in memory (`synth:2048`, each generated once:
# 16 frames at 30/3 = 10 fps, 48 px), as the label-efficiency study pretrains
# (docs/label_efficiency.md), for 6000 steps of 8 clips. Everything that changes the numbers is
# pinned: the seed, fp32 (`--precision auto` picks bf16 on a CPU with AVX512_BF16 or AMX), the
# CPU, no DataLoader workers, and 2 torch threads (float sums split over another number of
# threads round differently, and a long run amplifies that into another model).
#
# PYTHON (default `python`) is the interpreter that has echofm installed.
# ECHOFM_STOP_AFTER=N stops pretraining after N steps with the schedule of the full run, so
# the N lines of metrics.jsonl are the full run's first N (tests/test_reference_model.py).
set -euo pipefail
WORK=${1:?usage: bash recipe.sh WORKDIR}
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=2

"$PYTHON" -m echofm pretrain --config echofm-tiny --set model.img_size=48 --data synth:2048 --out "$WORK/run" \
    --steps 6000 --batch-size 8 --lr 5e-4 --frame-step 3 --seed 0 --precision fp32 --device cpu \
    --workers 0 --checkpoint-every 0 --quiet ${ECHOFM_STOP_AFTER:+--stop-after "$ECHOFM_STOP_AFTER"}
if [ -z "${ECHOFM_STOP_AFTER:-}" ]; then
    "$PYTHON" -m echofm.publish reference "$WORK/run" "$WORK/echofm-tiny-phantom"
fi
