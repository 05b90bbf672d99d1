#!/usr/bin/env bash
# The labeling-saving measurement on a short protocol (CPU): generated datasets, 3 seeds, arms s4al /
# random / supervised / full (N vs 2N), cost in labeled %, corrected %, clicks.
# Usage: bench/saving_measure.sh OUT_DIR [N] [ITERATIONS_AFTER_FIRST] [BATCH]
# Environment: MODEL (default lraspp_mobilenetv2, the project default), CYCLES (4), FULL_N (the full
# reference's N, default 4 x N: it must converge even when the arms train short), DATASETS (default
# "fashion-scenes aerial-maps long-tail"), JOBS (processes per dataset, 2), PARALLEL (1: the datasets run
# at once; 0: one after another, which on 2 cores wastes less to oversubscription), EXTRA (more simulate
# options, e.g. "--acquisition random").
set -euo pipefail
out=${1:?usage: bench/saving_measure.sh OUT_DIR [N] [ITERATIONS_AFTER_FIRST] [BATCH]}
n=${2:-120}
after=${3:-60}
batch=${4:-4}
model=${MODEL:-lraspp_mobilenetv2}
cycles=${CYCLES:-4}
full_n=${FULL_N:-$((4 * n))}
s4al=${S4AL:-.venv/bin/s4al}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$out"
[ -d "$out/data/fashion-scenes" ] || $s4al data fashion-scenes "$out/data/fashion-scenes" --n-train 200 --n-val 50
[ -d "$out/data/aerial-maps" ] || $s4al data aerial-maps "$out/data/aerial-maps" --n-train 80 --n-val 20
[ -d "$out/data/long-tail" ] || $s4al data long-tail "$out/data/long-tail" --n-train 200 --n-val 60
for ds in ${DATASETS:-fashion-scenes aerial-maps long-tail}; do
  # progress bars go to $ds.err, the report lines and the table to $ds.log
  # shellcheck disable=SC2086
  $s4al simulate "$out/data/$ds" --out "$out/$ds" --cycles "$cycles" --initial 0.02 --budget 0.02 \
    --model "$model" --iterations "$n" --init previous --iterations-after-first "$after" \
    --full-iterations "$full_n" --seeds 3 --jobs "${JOBS:-2}" --threads 1 \
    --batch-size "$batch" --unlabeled-batch-size "$batch" --device cpu --cache-dir "$out/cache" ${EXTRA:-} \
    > "$out/$ds.log" 2> "$out/$ds.err" &
  [ "${PARALLEL:-1}" = 1 ] || wait
done
wait
