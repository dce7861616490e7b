#!/usr/bin/env bash
# One CPU worker of the campaign: the grids still missing, one (data set, seed) at a time, in the
# order below. Start two of them side by side (two single-thread processes are the fastest layout
# on 2 cores, benchmarks/RESULTS.md); each skips what results/ holds and what the other worker
# is training. Extra arguments go to every `triage grid` (e.g. --out runs --data-root DIR).
#
#   OMP_NUM_THREADS=1 nohup nice -n 10 bash tools/campaign_worker.sh > w1.log 2>&1 &
#
# The order follows the issue's "done means": CIFAR-100 × 3 seeds are required, Stanford Dogs "as
# many seeds as the budget allows (at least 1)" and seed 2 is complete. So CIFAR-100 seed 2 (begun
# here), then CIFAR-100 seeds 0 and 1 (a lent GPU may take them whole first,
# `tools/gpu_campaign.py --datasets cifar100 --seeds 0 1 --no-pilot`; this worker then finds them
# done), then the other two Stanford Dogs seeds. Stanford Dogs seed 2 stays first in the list only
# so a fresh clone re-checks it is whole; it costs seconds when results/ holds it. One seed's
# children train on one device in one arithmetic, so a seed begun here finishes here.
set -u
EXTRA=("$@")
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
for spec in "stanford_dogs 2" "cifar100 2" "cifar100 0" "cifar100 1" "stanford_dogs 0" "stanford_dogs 1"; do
  dataset=${spec% *}; seed=${spec#* }
  echo "== $(date -u +%FT%TZ) worker $$: $dataset seed $seed"
  python -m triage grid --profile campaign --dataset "$dataset" --seeds "$seed" --no-notebooks --no-progress "${EXTRA[@]}"
done
