"""Add the dead-channel counts to finished runs trained before triage recorded them.

``dead_block1`` (recorded since git 7e8fdce) is the number of block-1 channels whose post-ReLU
output is zero on all of the 500 CKA probe images (:func:`triage.similarity.dead_channels`);
``dead_compressed`` and ``compressed_channels`` (a child's, recorded since the commit that added
this name) are the same count at the compressed block's output and that block's width
(:func:`triage.similarity.dead_compressed`). New runs record them when they finish. This tool
computes the missing ones for the exported runs of a profile whose weights are on this machine
(the run store's ``weights.pt``, or the exported weights of a base), exactly as a run would
(same probe images, same autocast), and writes them into the run's ``summary.json`` in the run
store and in ``results/`` (with ``dead_block1_by`` / ``dead_compressed_by``: this tool and the
git hash). Runs whose weights are not here (children trained on a lent GPU) keep no value.
Then run ``python -m triage export --profile PROFILE`` to rebuild ``runs.csv``.

    python tools/backfill_dead_channels.py --profile campaign [--dataset cifar10] [--runs runs]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch


def main(argv=None) -> int:
    from triage.experiments import load_model
    from triage.loaders import get_loaders
    from triage.similarity import CKA_IMAGES, block1_features, dead_channels, dead_compressed
    from triage.store import atomic_write_json as _write, default_results_root
    from triage.train import autocast_dtype
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="campaign")
    p.add_argument("--dataset", nargs="*", default=None)
    p.add_argument("--runs", default=os.environ.get("TRIAGE_RUNS", "runs"), help="the run store")
    p.add_argument("--data-root", default=None)
    a = p.parse_args(argv)
    exported = default_results_root() / a.profile / "runs"
    if not exported.is_dir():
        print(f"backfill: no exported runs in {exported}", file=sys.stderr)
        return 2
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    tests, done, missing = {}, 0, []
    for summary_path in sorted(exported.glob("*/*/summary.json")):
        d = summary_path.parent
        dataset = d.parent.name
        if a.dataset and dataset not in a.dataset:
            continue
        summary = json.loads(summary_path.read_text())
        cfg = json.loads((d / "config.json").read_text())["config"]
        need_block1 = summary.get("dead_block1") is None
        need_compressed = cfg.get("block", 0) > 0 and summary.get("dead_compressed") is None
        if not (need_block1 or need_compressed):
            continue
        local = Path(a.runs) / a.profile / dataset / d.name
        weights_dir = local if (local / "weights.pt").exists() else d if (d / "weights.pt").exists() else None
        if weights_dir is None:
            missing.append(f"{dataset}/{d.name}")
            continue
        key = (dataset, cfg.get("resolution"))
        if key not in tests:   # the run's own test set, index order: the probe is its first images
            tests[key] = get_loaders(dataset, root=a.data_root, batch_size=cfg["batch_size"],
                                     resolution=cfg.get("resolution"))[1]
        model = load_model(weights_dir, "cpu")
        amp = autocast_dtype("cpu", cfg.get("precision", "auto"))
        new = {}
        if need_block1:
            new.update(dead_block1=dead_channels(block1_features(model, tests[key], CKA_IMAGES, amp)),
                       dead_block1_by=f"tools/backfill_dead_channels.py@{git}")
        if need_compressed:
            dead, channels = dead_compressed(model, cfg["block"], tests[key], amp_dtype=amp)
            new.update(dead_compressed=dead, compressed_channels=channels,
                       dead_compressed_by=f"tools/backfill_dead_channels.py@{git}")
        _write(summary_path, {**summary, **new})
        if (local / "summary.json").exists():
            _write(local / "summary.json", {**json.loads((local / "summary.json").read_text()), **new})
        done += 1
        print(f"{dataset}/{d.name}: " + ", ".join(f"{k} {v}" for k, v in new.items() if not k.endswith("_by")),
              flush=True)
    print(f"backfill: {done} run(s) updated; {len(missing)} without weights here"
          + (f" (e.g. {missing[0]})" if missing else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
