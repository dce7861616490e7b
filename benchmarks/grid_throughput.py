"""Grid throughput: networks per hour of a slice of the Deep Net Triage grid, and k at once.

The paper's grid is 31 networks per data set (a base, then 5 blocks x 3 initialisers x
2 regimes, all starting from the trained base). For each slice given as
``PROFILE:DATASET:CHILDREN[:MAX_EPOCHS]`` this script

1. trains the slice's base, then CHILDREN representative children (evenly spaced over
   ``triage.grid.expand_grid``'s order, so blocks, initialisers and regimes are mixed), one
   after another in this process with ``triage.experiments.run`` -- the ``local``
   executor's order -- into a temporary runs folder (never ``./runs``), and reports
   networks/hour;
2. trains the same children again, from the same stored base, with k at once for every
   k in --ks: k worker processes (``--executor process``; each with cores/k torch threads)
   or, on CUDA, k threads each on its own CUDA stream in one process (``--executor
   streams``). Workers start, import torch and load the data before the clock starts;
3. estimates the whole 31-network grid of the slice's profile from the measured epoch
   times (metrics.csv) and per-network overheads (loading the parent, STN hints, saving),
   at k=1 and at the best k (base alone, then the children k at once).

MAX_EPOCHS caps every training of the slice (the paper profile's base is 100 epochs): the
base is then trained for MAX_EPOCHS and stored where its children look for the full
base -- a stand-in whose accuracy does not matter to a speed measurement -- and the
estimate still uses the profile's epochs.

    python benchmarks/grid_throughput.py --quick        # CI: smoke MNIST base + 2 children, k = 1, 2
    python benchmarks/grid_throughput.py                # full: smoke:mnist:4 and cpu:mnist:4, k = 1, 2
    python benchmarks/grid_throughput.py --device cuda  # smoke:mnist:8 and paper:cifar10:8:2, k = 1, 2, 4, 8
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from triage.experiments import PROFILES, TABLE1, RunConfig, RunStore, run  # noqa: E402
from triage.grid import expand_grid  # noqa: E402

GRID_CHILDREN = 30  # 5 blocks x 3 initialisers x 2 regimes (paper Sec. 3)


def _quiet(_msg):
    pass


# ----------------------------------------------------------------------------- slice
@dataclasses.dataclass
class Slice:
    profile: str
    dataset: str
    children: int
    max_epochs: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Slice":
        parts = text.split(":")
        if len(parts) not in (3, 4):
            raise argparse.ArgumentTypeError(f"a slice is PROFILE:DATASET:CHILDREN[:MAX_EPOCHS], got {text!r}")
        try:
            s = cls(parts[0], parts[1], int(parts[2]), int(parts[3]) if len(parts) == 4 else None)
        except ValueError:
            raise argparse.ArgumentTypeError(f"CHILDREN and MAX_EPOCHS must be integers in {text!r}") from None
        if s.profile not in PROFILES:
            raise argparse.ArgumentTypeError(f"unknown profile {s.profile!r}; choose one of {', '.join(PROFILES)}")
        if not 1 <= s.children <= GRID_CHILDREN or (s.max_epochs is not None and s.max_epochs < 1):
            raise argparse.ArgumentTypeError(f"CHILDREN must be 1..{GRID_CHILDREN} and MAX_EPOCHS >= 1 in {text!r}")
        return s

    def __str__(self):
        return f"{self.profile}:{self.dataset}:{self.children}" + (f":{self.max_epochs}" if self.max_epochs else "")


def slice_configs(s: Slice) -> tuple[RunConfig, RunConfig, list[RunConfig]]:
    """(base to train, base the children start from, children) of a slice."""
    over = {}
    grid = expand_grid(s.dataset, s.profile)
    if s.max_epochs is not None:
        child0 = grid[1]
        over = {"epochs": min(child0.epochs, s.max_epochs), "stn_epochs": min(child0.stn_epochs, s.max_epochs)}
        grid = [grid[0]] + [dataclasses.replace(c, **over) for c in grid[1:]]
    kids = grid[1:]
    picked = [kids[i * len(kids) // s.children] for i in range(s.children)]
    parent = picked[0].parent()
    assert all(c.parent() == parent for c in picked)
    base = parent if s.max_epochs is None else dataclasses.replace(parent, epochs=min(parent.epochs, s.max_epochs))
    return base, parent, picked


def install_stand_in(store: RunStore, trained: RunConfig, parent: RunConfig) -> None:
    """Store the short-trained base where children look for `parent` (the full-length base)."""
    if trained == parent:
        return
    src, dst = store.path(trained), store.path(parent)
    shutil.copytree(src, dst, dirs_exist_ok=True)
    meta = json.loads((dst / "config.json").read_text())
    meta.update(config=dataclasses.asdict(parent), key=parent.key(),
                note=f"stand-in: trained {trained.epochs} epochs by benchmarks/grid_throughput.py")
    (dst / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def copy_base(src: RunStore, dst: RunStore, parent: RunConfig) -> None:
    shutil.copytree(src.path(parent), dst.path(parent))


def epoch_seconds(run_dir: Path) -> list[float]:
    import csv
    with open(run_dir / "metrics.csv") as f:
        return [float(r["seconds"]) for r in csv.DictReader(f)]


def steady(xs: list[float]) -> float:
    """Median epoch time, leaving out the first epoch (warm-up) when there are more."""
    return statistics.median(xs[1:] if len(xs) > 1 else xs)


# ----------------------------------------------------------------------------- workers
def _preload(datasets, data_root, device):
    from triage.data import channel_stats, load_split
    for ds in datasets:
        for split in ("train", "test"):
            load_split(ds, split, data_root)
        channel_stats(ds, data_root)
    if device.startswith("cuda"):
        torch.zeros(1, device=device)  # create the CUDA context before the clock starts


def _train(cfg: RunConfig, root: str, data_root, device: str) -> float:
    t0 = time.perf_counter()
    run(cfg, RunStore(root), data_root=data_root, device=device, progress=False, log=_quiet)
    return time.perf_counter() - t0


def _process_worker(rank, threads, device, data_root, datasets, tasks, results, start):
    torch.set_num_threads(threads)
    try:
        _preload(datasets, data_root, device)
    except Exception as e:  # reported to the parent, which stops
        results.put(("error", rank, 0.0, f"{type(e).__name__}: {e}"))
        return
    results.put(("ready", rank, 0.0, None))
    start.wait()
    while True:
        item = tasks.get()
        if item is None:
            return
        cfg, root = item
        try:
            results.put(("done", cfg.name, _train(cfg, root, data_root, device), None))
        except Exception as e:
            results.put(("error", cfg.name, 0.0, f"{type(e).__name__}: {e}"))


def run_processes(cfgs, root: Path, k: int, threads: int, device: str, data_root) -> tuple[float, dict]:
    """Train cfgs with k worker processes; returns (wall seconds after all workers are ready, per-net s)."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    tasks, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    for c in cfgs:
        tasks.put((c, str(root)))
    for _ in range(k):
        tasks.put(None)
    datasets = sorted({c.dataset for c in cfgs})
    procs = [ctx.Process(target=_process_worker, args=(r, threads, device, data_root, datasets, tasks,
                                                       results, start), daemon=True) for r in range(k)]
    for p in procs:
        p.start()
    try:
        ready = 0
        while ready < k:
            kind, who, _, err = results.get(timeout=600)
            if kind == "error":
                raise RuntimeError(f"worker {who} failed to start: {err}")
            ready += 1
        t0 = time.perf_counter()
        start.set()
        per = {}
        for _ in cfgs:
            kind, name, secs, err = results.get(timeout=6 * 3600)
            if kind == "error":
                raise RuntimeError(f"{name} failed in a worker: {err}")
            per[name] = secs
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    return wall, per


def run_streams(cfgs, root: Path, k: int, device: str, data_root) -> tuple[float, dict]:
    """Train cfgs with k threads of this process, each launching on its own CUDA stream.

    The current stream is per thread in PyTorch, so each thread's kernels go to its own
    stream and may overlap on the GPU. On CPU there are no streams: the threads then only
    share this process's intra-op thread pool (measured for completeness, not advised).
    """
    _preload(sorted({c.dataset for c in cfgs}), data_root, device)
    tasks: queue.Queue = queue.Queue()
    for c in cfgs:
        tasks.put(c)
    per, errors = {}, []

    def worker():
        ctx = (torch.cuda.stream(torch.cuda.Stream(device)) if device.startswith("cuda")
               else contextlib.nullcontext())
        with ctx:
            while True:
                try:
                    cfg = tasks.get_nowait()
                except queue.Empty:
                    return
                try:
                    per[cfg.name] = _train(cfg, str(root), data_root, device)
                except Exception as e:
                    errors.append(f"{cfg.name}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker) for _ in range(k)]
    C.sync(torch.device(device))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    C.sync(torch.device(device))
    if errors:
        raise RuntimeError("; ".join(errors))
    return time.perf_counter() - t0, per


def run_notebooks(cfgs, root: Path, device: str, data_root) -> float:
    """The same networks through triage.executors.run_grid (papermill), as `triage grid` runs them."""
    from triage.executors import run_grid
    t0 = time.perf_counter()
    report = run_grid(cfgs, RunStore(root), executor="local", data_root=data_root, device=device,
                      progress=False, log=_quiet)
    if not report.ok:
        raise RuntimeError(f"run_grid failed: {report.failed[0]['error']}")
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- estimate
def estimate_grid(s: Slice, store: RunStore, trained_base: RunConfig, kids: list[RunConfig],
                  base_wall: float, kid_wall: dict) -> dict:
    """Seconds of the slice profile's whole 31-network grid, from this slice's measurements.

    base: profile epochs x steady base epoch time + the base's measured overhead.
    child: profile epochs x steady epoch time of its regime (median over the measured
    children of that regime; the base's when none) + overhead (wall - epochs), STN
    children's overhead scaled from the measured hint epochs to the profile's.
    """
    prof = PROFILES[s.profile]
    base_epochs = prof.base_epochs if prof.base_epochs is not None else TABLE1[s.dataset].base_epochs
    b_secs = epoch_seconds(store.path(trained_base))
    t_base = steady(b_secs)
    base_total = base_epochs * t_base + max(0.0, base_wall - sum(b_secs))
    per_regime, over_plain, over_stn = {}, [], []
    for c in kids:
        secs = epoch_seconds(store.path(c))
        per_regime.setdefault(c.regime, []).append(steady(secs))
        over = max(0.0, kid_wall[c.name] - sum(secs))  # parent loading, init, STN hints, saving
        (over_stn if c.init == "stn" else over_plain).append((over, c.stn_epochs))
    t_regime = {r: statistics.median(per_regime.get(r, [t_base])) for r in ("frozen", "thawed")}
    o_plain = statistics.median(o for o, _ in over_plain) if over_plain else 0.0
    if over_stn:  # the STN children's extra time over a plain child, per hint epoch
        o_stn_epoch = statistics.median(max(0.0, o - o_plain) / n for o, n in over_stn)
    else:  # not measured: a hint epoch (forward to one block) costs less than a base epoch
        o_stn_epoch = t_base
    per_child = {r: prof.comp_epochs * t_regime[r] + o_plain for r in t_regime}
    n_each = GRID_CHILDREN // 2  # 15 frozen and 15 thawed, 10 of the 30 with STN hints
    children_total = (n_each * (per_child["frozen"] + per_child["thawed"])
                      + (GRID_CHILDREN // 3) * prof.stn_epochs * o_stn_epoch)
    return {"base_s": base_total, "children_s": children_total, "t_base_epoch": t_base,
            "base_epoch_seconds": b_secs,
            "child_epoch_seconds": {c.name: epoch_seconds(store.path(c)) for c in kids},
            "t_epoch_frozen": t_regime["frozen"], "t_epoch_thawed": t_regime["thawed"],
            "overhead_s": o_plain, "stn_epoch_s": o_stn_epoch, "base_epochs": base_epochs,
            "comp_epochs": prof.comp_epochs, "stn_epochs": prof.stn_epochs}


def _hms(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke MNIST base + 2 children, k = 1, 2 (CI)")
    p.add_argument("--slice", action="append", type=Slice.parse, default=None, dest="slices",
                   metavar="PROFILE:DATASET:CHILDREN[:MAX_EPOCHS]", help="repeatable; see the module doc")
    p.add_argument("--ks", default=None, help="comma list of concurrent trainings (CPU 1,2; CUDA 1,2,4,8)")
    p.add_argument("--executor", default="process", choices=["process", "streams"],
                   help="how k > 1 trainings run at once (streams: CUDA streams, one process)")
    p.add_argument("--notebooks", action="store_true",
                   help="also time the first slice through triage.executors.run_grid (papermill notebooks)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the k=1 run (default: all)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--keep", action="store_true", help="keep the temporary runs folder (printed)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = C.resolve_device(args.device)
    threads = C.set_threads(args.threads)
    cuda = device.type == "cuda"
    if args.slices is None:
        if args.quick:
            args.slices = [Slice("smoke", "mnist", 2)]
        elif cuda:
            args.slices = [Slice("smoke", "mnist", 8), Slice("paper", "cifar10", 8, 2)]
        else:
            args.slices = [Slice("smoke", "mnist", 4), Slice("cpu", "mnist", 4)]
    try:
        ks = [int(k) for k in args.ks.split(",")] if args.ks else ([1, 2, 4, 8] if cuda and not args.quick else [1, 2])
    except ValueError:
        raise SystemExit(f"error: --ks takes comma-separated integers, got {args.ks!r}") from None
    if 1 not in ks or min(ks) < 1:
        raise SystemExit("error: --ks must contain 1 (the reference) and only positive values")
    if args.executor == "streams" and not cuda:
        print("note: --executor streams on CPU runs k threads in one process (no streams exist there)")

    info = C.describe_machine(device)
    print("command: python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])))
    C.print_machine(info)
    # a terminated benchmark still removes its temporary runs folder (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="triage-grid-bench-"))
    print(f"runs folder (temporary): {tmp}")
    cores = os.cpu_count() or 1
    results = []
    try:
        for si, s in enumerate(args.slices):
            trained, parent, kids = slice_configs(s)
            store = RunStore(tmp / f"slice{si}-k1")
            print(f"\n== slice {s}: base ({trained.epochs} epochs{', stand-in' if trained != parent else ''}) + "
                  f"{', '.join(c.name for c in kids)} ({kids[0].epochs} epochs, STN {kids[0].stn_epochs}); "
                  f"width {parent.width:g}, {parent.train_per_class or 'all'} train images/class")
            t0 = time.perf_counter()
            base_wall = _train(trained, str(store.root), args.data_root, str(device))
            install_stand_in(store, trained, parent)
            kid_wall = {}
            for c in kids:
                kid_wall[c.name] = _train(c, str(store.root), args.data_root, str(device))
            seq = time.perf_counter() - t0
            kids_seq = sum(kid_wall.values())
            row = {"slice": str(s), "networks": 1 + len(kids), "base_s": base_wall, "children": kid_wall,
                   "sequential_s": seq, "networks_per_hour": 3600 * (1 + len(kids)) / seq, "k": {}}
            row["k"][1] = {"executor": "sequential (this process)", "threads": threads, "children_s": kids_seq}
            print(f"sequential, {threads} threads: base {base_wall:.1f} s, children "
                  + ", ".join(f"{n} {t:.1f} s" for n, t in kid_wall.items())
                  + f" -> {row['networks_per_hour']:.0f} networks/hour")
            for k in [k for k in ks if k > 1]:
                store_k = RunStore(tmp / f"slice{si}-k{k}")
                copy_base(store, store_k, parent)
                if args.executor == "process":
                    per_worker = max(1, (threads if not cuda else cores) // k)
                    wall, _ = run_processes(kids, store_k.root, k, per_worker, str(device), args.data_root)
                    how = f"{k} processes x {per_worker} thread{'s' if per_worker > 1 else ''}"
                else:
                    wall, _ = run_streams(kids, store_k.root, k, str(device), args.data_root)
                    how = f"{k} threads/streams, one process"
                row["k"][k] = {"executor": how, "threads": per_worker if args.executor == "process" else threads,
                               "children_s": wall}
                print(f"k={k}: {how}: children in {wall:.1f} s "
                      f"({kids_seq / wall:.2f}x the sequential children's {kids_seq:.1f} s)")
            est = estimate_grid(s, store, trained, kids, base_wall, kid_wall)
            best_k = max(row["k"], key=lambda k: kids_seq / row["k"][k]["children_s"])
            speed = kids_seq / row["k"][best_k]["children_s"]
            est["grid_s_k1"] = est["base_s"] + est["children_s"]
            est["best_k"], est["grid_s_best_k"] = best_k, est["base_s"] + est["children_s"] / speed
            row["estimate"] = est
            b = est["base_epoch_seconds"]
            print(f"base epochs (train + test): {len(b)}, median after the first {est['t_base_epoch']:.2f} s, "
                  f"min {min(b):.2f}, max {max(b):.2f}; {sum(b):.1f} s of the base's {base_wall:.1f} s "
                  "(a wide min-max means other load during the run)")
            print(f"31-network {s.profile} grid of {s.dataset}, estimated: base {_hms(est['base_s'])} "
                  f"({est['base_epochs']} x {est['t_base_epoch']:.2f} s epochs) + 30 children "
                  f"{_hms(est['children_s'])} (epochs: frozen {est['t_epoch_frozen']:.2f} s, thawed "
                  f"{est['t_epoch_thawed']:.2f} s; overhead {est['overhead_s']:.1f} s/net; STN hint "
                  f"{est['stn_epoch_s']:.2f} s/epoch) = {_hms(est['grid_s_k1'])} sequential"
                  + (f", {_hms(est['grid_s_best_k'])} with children k={best_k} at once" if best_k != 1 else ""))
            if s.profile == "paper":  # issue 7's GPU target: the whole CIFAR-10 paper grid in <= 30 min
                best = min(est["grid_s_k1"], est["grid_s_best_k"])
                print(f"target: paper grid <= 30 min -> {_hms(best)}: "
                      + ("met" if best <= 1800 else f"missed by {best / 1800:.2f}x"))
            if args.notebooks and si == 0:
                if trained != parent:
                    print("--notebooks needs a slice without MAX_EPOCHS (a stand-in base is no grid run)")
                else:
                    wall = run_notebooks([parent] + kids, tmp / "notebooks", str(device), args.data_root)
                    row["notebooks_s"] = wall
                    print(f"through triage.executors.run_grid (papermill, one kernel per network): {wall:.1f} s "
                          f"-> {3600 * row['networks'] / wall:.0f} networks/hour "
                          f"({(wall - seq) / row['networks']:+.1f} s per network against the direct calls)")
            results.append(row)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    more = [k for k in ks if k > 1]
    head = ["slice", "networks", "sequential networks/hour", "children, k=1"] + [f"k={k}" for k in more]
    print("\n| " + " | ".join(head + ["31-network grid, estimated"]) + " |")
    print("|---|" + "---:|" * (len(head)))
    for r in results:
        k1 = r["k"][1]["children_s"]
        cells = [r["slice"], str(r["networks"]), f"{r['networks_per_hour']:.0f}", f"{k1:.1f} s"]
        cells += [f"{r['k'][k]['children_s']:.1f} s ({k1 / r['k'][k]['children_s']:.2f}x)" for k in more]
        est = r["estimate"]
        cells.append(_hms(est["grid_s_k1"]) + (f" (k={est['best_k']}: {_hms(est['grid_s_best_k'])})"
                                              if est["best_k"] != 1 else ""))
        print("| " + " | ".join(cells) + " |")
    la = C.load_average()
    if la:
        print(f"load average after: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    out = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "slices": results}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n")
    return out


if __name__ == "__main__":
    main()
