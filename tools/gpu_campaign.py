"""Advance the campaign on a lent GPU in one call (issue 12, item 8): bases, the child-lr pilot, grids.

Runs until --deadline seconds after it started, then kills what is still training and
stops; every network that finished was exported to results/triage/<profile>/runs/ as it
finished (triage.run does that), so nothing finished is lost. The same code runs on CPU
(``--device cpu --profile smoke --datasets mnist``: the test of this script).

Steps:
1. (optional) the wide CIFAR-10 base of the critical-paths chapter, in its own process;
2. every data set's bases (3 seeds) and the child-lr pilot on CIFAR-10 seed 0: five children
   (one per block, RW/MW/STN, FM and TM) trained with both child_lr readings;
3. the pre-registered choice: ``initial`` (a fresh SGD at the profile's lr, the paper's
   reading) if its pilot children's mean best validation accuracy beats ``continue``'s (the
   base's final lr) by more than 0.3 points, else ``continue`` (as good, and far cheaper:
   it starts at the floor and stops at the first plateau);
4. the grids (31 networks + the control each) in the issue's priority order.

    python tools/gpu_campaign.py --device cuda --jobs 12 --deadline 420 --out $OUT
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from triage.tables import PILOT_CHILDREN as PILOT  # noqa: E402  (one child per block, RW/MW/STN, FM and TM)
MARGIN = 0.003   # "initial" must win by more than 0.3 points of mean best validation accuracy


def _kill_children() -> None:
    import psutil
    for c in psutil.Process().children(recursive=True):
        try:
            c.kill()
        except psutil.Error:
            pass


def longest_first(cfgs):
    """``cfgs`` with each seed's long networks (TM children, the control) queued before its FM ones.

    The pool runs networks in queue order; a TM child trains about 3x as long as an FM child,
    so starting them first lets a seed finish sooner before the deadline (fewer seeds left
    half done on this device). Groups (data set, seed) and each group's base keep their order.
    """
    group = {}
    for c in cfgs:
        group.setdefault(c.parent().key(), len(group))
    rank = lambda c: 0 if not c.is_child else 1 if (c.control or c.regime == "thawed") else 2  # noqa: E731
    return sorted(cfgs, key=lambda c: (group[c.parent().key()], rank(c)))


def begun_elsewhere(cfgs, store, device, log=print) -> set:
    """The (data set, seed) grids of ``cfgs`` whose finished children or control trained on another
    device type: one seed trains on one device (``triage.run`` refuses the rest), so they are left
    to the device they began on instead of failing network by network."""
    from triage.experiments import resolve_device, seed_settings
    here, out, first = resolve_device(device).type, set(), {}
    for c in cfgs:
        if c.is_child:
            first.setdefault((c.dataset, c.seed), []).append(c)
    for (ds, seed), kids in first.items():
        # a network is not its own sibling: two of them together see every finished one
        seen = {d for c in kids[:2] for d, _ in seed_settings(c, store)}
        if seen and here not in seen:
            out.add((ds, seed))
            log(f"{ds} seed {seed}: begun on {', '.join(sorted(seen))}, not {here}: left to it")
    return out


def choose_child_lr(store, pilot_cfgs) -> dict:
    """The pre-registered criterion on the finished pilot runs (see the module docstring)."""
    acc = {"initial": [], "continue": []}
    for c in pilot_cfgs:
        d = store.find(c)
        if d is not None:
            acc[c.child_lr].append(json.loads((d / "summary.json").read_text())["best_val_acc"])
    n = min(len(acc["initial"]), len(acc["continue"]))
    if n == 0:
        return {"choice": None, "why": "no complete pilot pair", "acc": acc}
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    choice = "initial" if mean["initial"] - mean["continue"] > MARGIN else "continue"
    return {"choice": choice, "mean_best_val_acc": mean, "acc": acc, "margin": MARGIN,
            "why": f"initial - continue = {100 * (mean['initial'] - mean['continue']):+.2f} pt "
                   f"(initial wins only above +{100 * MARGIN:.1f} pt)"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--profile", default="campaign")
    p.add_argument("--datasets", nargs="+", default=["cifar10", "mnist", "cifar100", "stanford_dogs"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=12)
    p.add_argument("--deadline", type=float, default=420, help="seconds from start")
    p.add_argument("--wide", action="store_true", help="also train the wide CIFAR-10 base")
    p.add_argument("--no-pilot", action="store_true", help="use the profile's child_lr")
    p.add_argument("--set", nargs="*", default=[], help="FIELD=VALUE overrides for every network (tests)")
    p.add_argument("--out", default=None, help="folder for decision.json")
    a = p.parse_args()
    t0 = time.time()
    from triage.experiments import PROFILES, RunStore, make_config
    from triage.executors import run_grid
    from triage.grid import _key_values, expand_grid

    overrides = _key_values(a.set, "--set")
    store = RunStore()
    log = lambda m: print(f"[{time.time() - t0:6.0f} s] {m}", flush=True)   # noqa: E731
    timer = threading.Timer(max(1.0, a.deadline), lambda: (log("deadline: stopping"), _kill_children()))
    timer.daemon = True
    timer.start()
    wide = None
    if a.wide:
        wide = subprocess.Popen([sys.executable, "-m", "triage", "run", "--dataset", "cifar10", "--profile", "wide",
                                 "--device", a.device, "--no-progress"])
    grid = lambda ds, seeds, **kw: expand_grid(ds, a.profile, seeds, **{**overrides, **kw})  # noqa: E731
    bases = [c for ds in a.datasets for c in grid(ds, a.seeds, blocks=[1], inits=["random"], regimes=["thawed"])
             if c.block == 0 and not c.control]
    pilot = []
    stored = Path(store.results or ".") / a.profile / "child_lr_pilot.json"
    if stored.is_file() and not a.no_pilot:
        log(f"child lr decided earlier ({stored}): no pilot")
        a.no_pilot = True
    if not a.no_pilot:   # on CIFAR-10 seed 0 (the first data set when CIFAR-10 is not run)
        ds = "cifar10" if "cifar10" in a.datasets else a.datasets[0]
        pilot = [make_config(ds, b, i, r, a.profile, a.seeds[0], child_lr=lr, **overrides)
                 for lr in ("continue", "initial") for b, i, r in PILOT]
    kw = dict(device=a.device, notebooks=False, jobs=a.jobs, threads=1, progress=False, log=log)
    log(f"phase 1: {len(bases)} bases + {len(pilot)} pilot children, {a.jobs} at once")
    run_grid(bases + pilot, store, **kw)
    if pilot:
        decision = choose_child_lr(store, pilot)
    elif stored.is_file():
        decision = json.loads(stored.read_text())
    else:
        decision = {"choice": PROFILES[a.profile].child_lr, "why": "no pilot: the profile's"}
    if decision["choice"] is None:
        decision["choice"] = PROFILES[a.profile].child_lr
    log(f"child lr: {decision['choice']} ({decision['why']})")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "decision.json").write_text(json.dumps(decision, indent=2))
    if pilot and store.results is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(decision, indent=2))
    cfgs = longest_first([c for ds in a.datasets for c in grid(ds, a.seeds, child_lr=decision["choice"])])
    cfgs = [c for c in cfgs if (c.dataset, c.seed) not in begun_elsewhere(cfgs, store, a.device, log)]
    todo = [c for c in cfgs if not store.is_done(c)]
    log(f"phase 2: {len(todo)} of {len(cfgs)} networks to train, {a.jobs} at once, "
        f"{a.deadline - (time.time() - t0):.0f} s left")
    if time.time() - t0 < a.deadline:
        rep = run_grid(cfgs, store, **kw)
        log(rep.summary())
    timer.cancel()
    if wide is not None:
        left = a.deadline - (time.time() - t0)
        try:
            wide.wait(timeout=max(1.0, left))
        except subprocess.TimeoutExpired:
            log("the wide base did not finish in time")
            wide.kill()
    done = [c for c in cfgs if store.is_done(c)]
    log(f"finished: {len(done)} of {len(cfgs)} campaign networks after {time.time() - t0:.0f} s")
    for c in done:
        s = json.loads((store.find(c) / "summary.json").read_text())
        print(f"  {c.dataset:14s} s{c.seed} {c.name:18s} test {s['test_acc_at_best_val']:.4f} "
              f"val {s['best_val_acc']:.4f} ep {s['epochs_trained']:2d} {s['stop_reason']:9s} "
              f"{s['train_seconds']:7.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
