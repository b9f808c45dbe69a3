#!/usr/bin/env bash
# The exact commands that made echofm-tiny-phantom, the reference model shipped in this folder.
#
#   bash recipe.sh WORKDIR
#
# WORKDIR receives the phantom DICOM cines, the prepared cache and the pretraining run; the
# last step writes WORKDIR/echofm-tiny-phantom/ (echofm-tiny-phantom.safetensors in float16,
# config.yaml, metrics.jsonl): the files shipped here. Everything that changes the numbers is
# pinned: the seed, fp32 (`--precision auto` picks bf16 on a CPU with AVX512_BF16 or AMX),
# the CPU, no DataLoader workers.
#
# PYTHON (default `python`) is the interpreter that has echofm installed.
# ECHOFM_STOP_AFTER=N stops pretraining after N steps with the schedule of the full run, so
# the N lines of metrics.jsonl are the full run's first N (tests/test_reference_model.py).
set -euo pipefail
WORK=${1:?usage: bash recipe.sh WORKDIR}
PYTHON=${PYTHON:-python}

"$PYTHON" -m echofm synth --format dicom --n 96 --size 96 --frames 32 --fps 15 --seed 0 --out "$WORK/phantoms" --quiet
"$PYTHON" -m echofm prepare "$WORK/phantoms" --out "$WORK/cache" --size 80 --quiet
"$PYTHON" -m echofm pretrain --config echofm-tiny --set model.img_size=80 --data "$WORK/cache" --out "$WORK/run" \
    --steps 300 --batch-size 8 --lr 5e-4 --frame-step 1 --seed 0 --precision fp32 --device cpu \
    --workers 0 --checkpoint-every 0 --quiet ${ECHOFM_STOP_AFTER:+--stop-after "$ECHOFM_STOP_AFTER"}
if [ -z "${ECHOFM_STOP_AFTER:-}" ]; then
    "$PYTHON" -m echofm.publish reference "$WORK/run" "$WORK/echofm-tiny-phantom"
fi
