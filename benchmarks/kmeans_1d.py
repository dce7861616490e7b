"""Scalar (1-D) k-means of network weights: triage.kmeans.kmeans_1d vs scikit-learn's KMeans.

Both cluster the same weights (one layer's weight and bias values, as the paper's
per-layer codebooks do) for several K. Reported per K: wall-clock seconds of each, the
speed ratio sklearn/ours, both inertias (sum of squared errors; lower is better) and
their ratio, and the number of distinct values after quantisation (must be K).

Weights: ``--run DIR`` (a triage run folder), else the first stored paper- or
cpu-profile base under ./runs with a large enough layer, else an untrained VGG16-BN
(its Kaiming-normal weights). The largest conv layer is used, subsampled to ``--n`` values
(0: all of them).

    python benchmarks/kmeans_1d.py --quick          # < 1 min on 2 CPU cores (CI)
    python benchmarks/kmeans_1d.py --out results/autopsy/kmeans_1d_benchmark.csv
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, print_machine, set_threads  # noqa: E402

import triage  # noqa: E402
from triage import autopsy, kmeans  # noqa: E402


def largest_conv(model):
    convs = autopsy.weight_layers(model, kinds=("conv",))
    name = max(convs, key=lambda n: convs[n].weight.numel())
    return name, autopsy.layer_values(convs[name]).float().numpy()


def find_weights(run_dir: str | None, width: float, n: int):
    """(layer name, values float32 numpy, where they came from) of the largest conv layer.

    A stored trained base is used only if its largest layer has at least ``n`` values
    (smoke-profile layers are too small to say anything about speed)."""
    if run_dir is not None:
        return (*largest_conv(triage.load_model(run_dir)), f"run {run_dir}")
    for profile in ("paper", "cpu"):
        for summary in sorted(Path("runs", profile).glob("*/base-*/summary.json")):
            name, x = largest_conv(triage.load_model(summary.parent))
            if x.size >= max(n, 100_000):
                return name, x, f"trained base {summary.parent}"
    torch.manual_seed(0)
    name, x = largest_conv(triage.vgg16_bn(10, width=width))
    return name, x, f"untrained VGG16-BN width {width:g} (Kaiming-normal init)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="100k values, K in 4, 32, 256 (< 1 min)")
    p.add_argument("--run", default=None, help="triage run folder whose weights to cluster")
    p.add_argument("--n", type=int, default=None, help="values to cluster (0: the whole layer)")
    p.add_argument("--ks", type=int, nargs="+", default=None, help="cluster counts")
    p.add_argument("--width", type=float, default=1.0, help="VGG width when no trained run is found")
    p.add_argument("--threads", type=int, default=None, help="torch threads (sklearn uses its own)")
    p.add_argument("--out", default=None, help="write the table as CSV here")
    a = p.parse_args(argv)
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        print("error: this benchmark needs scikit-learn (pip install scikit-learn)", file=sys.stderr)
        return 2
    set_threads(a.threads)
    ks = a.ks or ([4, 32, 256] if a.quick else [2, 4, 8, 16, 32, 64, 128, 256])
    n = a.n if a.n is not None else (100_000 if a.quick else 0)
    machine = describe_machine(torch.device("cpu"))
    print_machine(machine)
    name, x, source = find_weights(a.run, a.width, n)
    if n and n < x.size:
        x = np.random.default_rng(0).choice(x, n, replace=False)
    print(f"weights: {name} of {source}: {x.size:,} values ({np.unique(x).size:,} distinct)")
    rows = []
    for k in ks:
        t0 = time.perf_counter()
        ours = kmeans.kmeans_1d(x, k)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = KMeans(k, n_init=1, random_state=0).fit(x.astype(np.float64).reshape(-1, 1))
        t_sk = time.perf_counter() - t0
        distinct = int(torch.unique(ours.centroids[ours.labels]).numel())
        rows.append({"k": k, "n": x.size, "ours_s": t_ours, "sklearn_s": t_sk, "speedup": t_sk / t_ours,
                     "ours_inertia": ours.inertia, "sklearn_inertia": ref.inertia_,
                     "inertia_ratio": ours.inertia / ref.inertia_, "distinct": distinct})
        r = rows[-1]
        print(f"K={k:4d}: ours {t_ours:7.3f} s, sklearn {t_sk:7.2f} s ({r['speedup']:6.1f}x); "
              f"inertia ours/sklearn = {r['inertia_ratio']:.4f}; {distinct} distinct values", flush=True)
    df = pd.DataFrame(rows)
    df.insert(0, "layer", name)
    df.insert(1, "source", source)
    df["cpu"] = f"{machine['cpu']} ({machine['cpu_count']} cores)"
    df["load_average_1min"] = machine["load_average"][0] if machine["load_average"] else float("nan")
    slow = df["speedup"].min()
    worse = (df["inertia_ratio"] > 1 + 1e-9).sum()
    print(f"\nspeed ratio sklearn/ours: {df['speedup'].median():.1f}x median "
          f"(min {slow:.1f}x, max {df['speedup'].max():.1f}x); ours has the lower or equal inertia for "
          f"{len(df) - worse} of {len(df)} K; distinct values == K for all: {(df['distinct'] == df['k']).all()}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.out, index=False)
        print(f"wrote {a.out}")
    return 0 if worse == 0 and (df["distinct"] == df["k"]).all() else 1


if __name__ == "__main__":
    sys.exit(main())
