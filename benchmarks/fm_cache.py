"""FM and STN with and without the frozen-feature cache: seconds per epoch, and a campaign grid's cost.

Under FM (and in STN's hint training) the blocks before the compressed one are frozen, so
`triage.train.CachedFeatures` computes their output once per image and flip. This script
times one training epoch of a width-1/8 CIFAR-10 child per block, cached and uncached, in
the same process with the variants taking turns (so machine load hits both alike), plus a
TM epoch and the cache's one-off build, and turns them into the campaign's networks per hour
before (uncached, one notebook per network) and after (cached, --no-notebooks), with the
epoch counts the campaign's CIFAR-10 children actually trained (results/triage/campaign).

    python benchmarks/fm_cache.py --quick        # CI: seconds
    python benchmarks/fm_cache.py                # the RESULTS.md figures
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from triage.loaders import get_loaders
from triage.experiments import _frozen_features, make_config
from triage.init import glorot_
from triage.models import vgg16_bn
from triage.surgery import compress_block
from triage.train import CachedFeatures, apply_regime, autocast_dtype, make_optimizer, train_one_epoch

NOTEBOOK_S = 7.0   # papermill's kernel start + imports per network, measured (benchmarks/RESULTS.md)


def _epoch(model, loader, forward, regime, block, amp):
    opt = make_optimizer(model, 0.01, 0.9, 5e-4)
    t0 = time.perf_counter()
    train_one_epoch(model, opt, loader, device="cpu", amp_dtype=amp, regime=regime, block=block,
                    progress=False, forward=forward)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--per-class", type=int, default=None, help="training images per class")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    per_class = a.per_class or (20 if a.quick else 300)
    reps = a.reps or (1 if a.quick else 3)
    torch.set_num_threads(a.threads)
    amp = autocast_dtype("cpu")
    cl = amp is not None
    train, _, _ = get_loaders("cifar10", batch_size=128, train_per_class=per_class, test_per_class=1,
                              channels_last=cl)
    base = vgg16_bn(10, width=1 / 8)
    if cl:
        base = base.to(memory_format=torch.channels_last)
    print(f"CIFAR-10, width 1/8, batch 128, {train.dataset_size} training images, {a.threads} thread(s), "
          f"{'bf16 autocast' if amp else 'fp32'}; median of {reps} epoch(s) per variant")
    print("| block | FM uncached s/epoch | FM cached s/epoch | speed-up | cache build s | TM s/epoch |")
    print("|---:|---:|---:|---:|---:|---:|")
    rows = {}
    for block in (2, 3, 4, 5):
        cfg = make_config("cifar10", block, "random", "frozen", profile="campaign")
        child = glorot_(compress_block(base, block), block)
        apply_regime(child, "frozen", block)
        t0 = time.perf_counter()
        feats, fwd = _frozen_features(cfg, child, train, amp)
        build = time.perf_counter() - t0
        assert isinstance(feats, CachedFeatures)
        unc, cac = [], []
        for _ in range(reps):
            unc.append(_epoch(child, train, None, "frozen", block, amp))
            cac.append(_epoch(child, feats, fwd, "frozen", block, amp))
        tm_child = compress_block(base, block)
        apply_regime(tm_child, "thawed", block)
        tm = statistics.median(_epoch(tm_child, train, None, "thawed", block, amp) for _ in range(reps))
        u, c = statistics.median(unc), statistics.median(cac)
        rows[block] = (u, c, build, tm)
        print(f"| {block} | {u:.2f} | {c:.2f} | {u / c:.2f}x | {build:.2f} | {tm:.2f} |")
    # A campaign grid's children: 15 FM (5 blocks x 3 inits) and 15 TM; the campaign's CIFAR-10
    # children trained 25-30 epochs (initial lr); block 1 has no frozen prefix.
    epochs = 28
    u_fm = statistics.mean([rows[b][0] for b in rows] + [rows[2][0]])        # block 1 ~ block 2's cost
    c_fm = statistics.mean([rows[b][1] + rows[b][2] / epochs for b in rows] + [rows[2][0]])
    tm = statistics.mean(r[3] for r in rows.values())
    before = 15 * (epochs * u_fm + NOTEBOOK_S) + 15 * (epochs * tm + NOTEBOOK_S)
    after = 15 * epochs * c_fm + 15 * epochs * tm
    scale = 45000 / train.dataset_size
    print(f"\na grid's 30 children at {epochs} epochs each, scaled to 45,000 training images: "
          f"{before * scale / 3600:.2f} h before, {after * scale / 3600:.2f} h after "
          f"({30 / (before * scale / 3600):.1f} -> {30 / (after * scale / 3600):.1f} networks/hour, "
          f"{before / after:.2f}x); STN hint epochs and evaluation not included")


if __name__ == "__main__":
    main()
