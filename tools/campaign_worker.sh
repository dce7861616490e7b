#!/usr/bin/env bash
# One CPU worker of the campaign: the grids still missing, one (data set, seed) at a time, in the
# order below. Start two of them side by side (two single-thread processes are the fastest layout
# on 2 cores, benchmarks/RESULTS.md); each skips what results/ holds and what the other worker
# is training. Extra arguments go to every command (e.g. --out runs --data-root DIR).
#
#   OMP_NUM_THREADS=1 nohup nice -n 10 bash tools/campaign_worker.sh > w1.log 2>&1 &
#
# The order follows the issues' "done means":
# 1. issue 12: CIFAR-100 × 3 seeds are required, Stanford Dogs "as many seeds as the budget allows
#    (at least 1)" and seed 2 is complete. So CIFAR-100 seed 2 (begun here), then CIFAR-100 seeds 0
#    and 1 (a lent GPU may take them whole first, `tools/gpu_campaign.py --datasets cifar100
#    --seeds 0 1 --no-pilot`; this worker then finds them done). Stanford Dogs seed 2 stays first
#    in the list only so a fresh clone re-checks it is whole; it costs seconds when results/ holds it.
#    After CIFAR-100 seed 2, its FM block-1 networks again from the base's final lr (continue_lr).
# 2. issue 17 (run "only after the converged campaign has finished"): the ResNet-8 grid on CIFAR-10
#    (TM schemes, 3 seeds) and the VGG16-BN compress-to-failure path on CIFAR-10 (3 seeds).
# 3. the optional Stanford Dogs seeds 0 and 1.
# One seed's children train on one device in one arithmetic, so a seed begun here finishes here.
set -u
EXTRA=("$@")
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

grid() {   # grid DATASET SEED [grid options]: the grid's run locks share it between the workers
  local dataset=$1 seed=$2
  shift 2
  echo "== $(date -u +%FT%TZ) worker $$: $dataset seed $seed $*"
  python -m triage grid --profile campaign --dataset "$dataset" --seeds "$seed" "$@" --no-notebooks --no-progress \
    "${EXTRA[@]}"
}

failure() {   # failure DATASET SEED: a path walks step after step and triage does not lock it, so
  # one worker takes a seed's path (flock); the other goes on and finds it done (or resumes it) later
  local dataset=$1 seed=$2 rc=0
  echo "== $(date -u +%FT%TZ) worker $$: $dataset seed $seed failure path"
  flock -n -E 200 "${TMPDIR:-/tmp}/triage-failure-campaign-$dataset-$seed.lock" \
    python -m triage failure --profile campaign --dataset "$dataset" --seeds "$seed" --no-progress "${EXTRA[@]}" \
    || rc=$?
  [ "$rc" = 200 ] && echo "   the other worker walks this path; going on"
  return 0
}

continue_lr() {   # continue_lr DATASET SEED BLOCK: that block's FM children again, from the base's final lr
  # (the claims chapter's test of why FM block-1 networks fail: dead channels after a large first
  # step). `triage run` does not lock a run either, so one worker per network (flock).
  local dataset=$1 seed=$2 block=$3 init rc
  for init in random mean stn; do
    rc=0
    echo "== $(date -u +%FT%TZ) worker $$: $dataset seed $seed b$block-$init-frozen from the base's final lr"
    flock -n -E 200 "${TMPDIR:-/tmp}/triage-continue-campaign-$dataset-$seed-$block-$init.lock" \
      python -m triage run --profile campaign --dataset "$dataset" --seed "$seed" --block "$block" --init "$init" \
      --regime frozen --child-lr continue --no-progress "${EXTRA[@]}" || rc=$?
    [ "$rc" = 200 ] && echo "   the other worker trains it; going on"
  done
  return 0
}

grid stanford_dogs 2
grid cifar100 2
# CIFAR-100 seed 2's FM block-1 networks failed (2.0% and 0.98%, chance 1%; 9 and 13 of 16 channels
# dead): the same test of the starting lr as CIFAR-10's block 1
continue_lr cifar100 2 1
for seed in 0 1; do grid cifar100 "$seed"; done
for seed in 0 1 2; do grid cifar10 "$seed" --set model=resnet8 width=1.0 --regimes thawed; done
for seed in 0 1 2; do failure cifar10 "$seed"; done
for seed in 0 1; do grid stanford_dogs "$seed"; done
