"""Pins what a refactoring must not change (issue 15): every profile's run addresses and
the smoke grid's numbers.

A campaign restarts from main each session and finds its finished networks by their
config hash, so a moved field, a renamed default or a changed RNG order would orphan
hours of training. These tests pass before and after any restructuring of ``triage/``.

The pins live in ``tests/pinned/``, the smoke grid's numbers once per arithmetic (bf16 on a CPU
with native bf16, fp32 elsewhere). To re-pin after an *intended* change of a hash or a number,
run ``python tests/test_pinned.py --write`` (on a machine of each arithmetic) and say why in the
commit.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from triage.experiments import PROFILES, RunStore
from triage.executors import run_grid
from triage.grid import expand_grid
from triage.train import DTYPES, autocast_dtype

PINNED = Path(__file__).resolve().parent / "pinned"
DATASETS = ("mnist", "cifar10", "cifar100", "stanford_dogs")
# The smoke grid whose numbers are pinned: a base and one child of each init and
# regime family, on real MNIST (cut to the smoke profile's 2,000/500 images).
SMOKE = dict(datasets="mnist", profile="smoke", seeds=(0,), blocks=(2, 4), inits=("random", "mean", "stn"),
             regimes=("frozen", "thawed"))
SMOKE_NETWORKS = ("base", "b2-random-thawed", "b2-stn-frozen", "b4-mean-frozen", "b4-stn-thawed")
METRICS = ["train_loss", "train_acc", "test_loss", "test_acc", "lr"]


def grid_addresses() -> dict[str, list[str]]:
    """Every network's ``name-key`` of every profile, data set and seed 0-2, VGG and ResNet-8."""
    out = {}
    for profile in PROFILES:
        for model in ("vgg16_bn", "resnet8"):
            cfgs = expand_grid(DATASETS, profile, seeds=(0, 1, 2), **({} if model == "vgg16_bn" else
                                                                      {"model": model}))
            out[f"{profile}/{model}"] = [f"{c.dataset}/{c.seed}/{c.name}-{c.key()}" for c in cfgs]
    return out


def digest(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def smoke_metrics(root: Path) -> dict:
    """Run the smoke grid into ``root`` (one torch thread) and read back its per-epoch numbers."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # the reduction order, hence the last bits, depends on the thread count
    try:
        store = RunStore(root, results=None)
        cfgs = expand_grid(**SMOKE)
        report = run_grid(cfgs, store, notebooks=False, progress=False, log=lambda m: None)
        assert report.ok, report.failed
    finally:
        torch.set_num_threads(n)
    out = {}
    for cfg in cfgs:
        if cfg.name in SMOKE_NETWORKS:
            m = pd.read_csv(store.path(cfg) / "metrics.csv")
            out[cfg.name] = {c: [float(x) for x in m[c]] for c in METRICS}
    return out


def machine() -> dict:
    """What the smoke grid's numbers depend on: torch, the CPU's vector unit, and the arithmetic
    ``precision="auto"`` gives there (bf16 only on a CPU with native bf16)."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "autocast": DTYPES[autocast_dtype("cpu")]}


def pin_for(pins: list[dict], here: dict) -> dict | None:
    """The pin made on this very machine, else one made in the same arithmetic, else None."""
    same = [p for p in pins if p["machine"] == here]
    return (same or [p for p in pins if p["machine"]["autocast"] == here["autocast"]] or [None])[0]


def test_every_profile_address_is_pinned():
    pinned = json.loads((PINNED / "addresses.json").read_text())
    now = grid_addresses()
    assert sorted(now) == sorted(pinned["digests"]), "a profile or model was added or removed: re-pin"
    changed = {k: (len(now[k]), pinned["counts"][k]) for k in now if digest(now[k]) != pinned["digests"][k]}
    assert not changed, f"run addresses changed (now, pinned network counts): {changed}"
    # A few spelled out, so a reader sees what is pinned (the campaign's CIFAR-10 seed-0 base).
    assert "cifar10/0/base-926bfa329ac8" in now["campaign/vgg16_bn"]
    assert "cifar10/0/base-1da443184428" in now["cpu/vgg16_bn"]


def test_pin_for_prefers_this_machine_then_its_arithmetic():
    bf16_a = {"machine": {"autocast": "bfloat16", "cpu_capability": "AVX512", "torch": "t"}, "metrics": "a"}
    bf16_b = {"machine": {"autocast": "bfloat16", "cpu_capability": "AMX", "torch": "t"}, "metrics": "b"}
    fp32 = {"machine": {"autocast": "float32", "cpu_capability": "AVX2", "torch": "t"}, "metrics": "c"}
    pins = [bf16_a, bf16_b, fp32]
    assert pin_for(pins, bf16_b["machine"]) is bf16_b                         # the very machine
    assert pin_for(pins, {**fp32["machine"], "cpu_capability": "AVX512"}) is fp32   # same arithmetic
    assert pin_for([bf16_a], fp32["machine"]) is None                         # no pin of its arithmetic


def test_smoke_grid_numbers_are_pinned(tmp_path, triage_cache, shared_data, monkeypatch):
    monkeypatch.setenv("TRIAGE_DATA", str(shared_data))
    pins = json.loads((PINNED / "smoke_metrics.json").read_text())["pins"]
    pinned = pin_for(pins, machine())
    # fp32 and bf16 runs part from the first step (0.2 apart in training loss by epoch 5), so each
    # arithmetic has its own pin; a machine in neither is told how to add one
    assert pinned is not None, (f"no pin in {machine()['autocast']} (pinned: "
                                f"{[p['machine'] for p in pins]}): run python tests/test_pinned.py --write here")
    now = smoke_metrics(tmp_path / "runs")
    assert sorted(now) == sorted(pinned["metrics"])
    if machine() != pinned["machine"]:
        # kernels of one arithmetic differ between CPU instruction sets and torch builds: bit
        # equality is promised on the machine that pinned; elsewhere only closeness is checked.
        for name, cols in now.items():
            for c, values in cols.items():
                assert values == pytest.approx(pinned["metrics"][name][c], rel=0.05, abs=0.02), (name, c)
        return
    assert now == pinned["metrics"], "the smoke grid's numbers changed bit for bit"


if __name__ == "__main__" and "--write" in sys.argv:
    import os
    import tempfile
    PINNED.mkdir(exist_ok=True)
    addr = grid_addresses()
    (PINNED / "addresses.json").write_text(json.dumps(
        {"counts": {k: len(v) for k, v in addr.items()}, "digests": {k: digest(v) for k, v in addr.items()}},
        indent=1, sort_keys=True) + "\n")
    os.environ.setdefault("TRIAGE_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRIAGE_CACHE"] = str(Path(tmp) / "cache")
        metrics = smoke_metrics(Path(tmp) / "runs")
    path = PINNED / "smoke_metrics.json"
    # one pin per arithmetic: this machine's replaces the pin of its arithmetic, the others stay
    pins = [p for p in json.loads(path.read_text())["pins"] if p["machine"]["autocast"] != machine()["autocast"]] \
        if path.is_file() else []
    path.write_text(json.dumps({"pins": pins + [{"machine": machine(), "metrics": metrics}]},
                               indent=1, sort_keys=True) + "\n")
    print(f"pinned {sum(map(len, addr.values()))} addresses and {len(metrics)} networks' metrics")
