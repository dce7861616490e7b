"""tools/gpu_campaign.py on its CPU path: the pilot, the stored decision, the deadline."""
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
ARGS = ["--device", "cpu", "--profile", "smoke", "--datasets", "mnist", "--seeds", "0", "--jobs", "2",
        "--set", "width=0.0625", "train_per_class=10", "test_per_class=10", "val_fraction=0.25", "epochs=1",
        "stn_epochs=1"]


def test_gpu_campaign_cpu_path(tmp_path):
    env = {**os.environ, "TRIAGE_RUNS": str(tmp_path / "runs"), "TRIAGE_RESULTS": str(tmp_path / "results"),
           "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "tools/gpu_campaign.py", *ARGS, "--deadline", "120",
                          "--out", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    decision = json.loads((tmp_path / "out" / "decision.json").read_text())
    assert decision["choice"] in ("initial", "continue") and len(decision["acc"]["initial"]) == 5
    stored = tmp_path / "results" / "triage" / "smoke" / "child_lr_pilot.json"
    assert json.loads(stored.read_text()) == decision
    # a second call reuses the decision and stops at its deadline, keeping what finished
    out2 = subprocess.run([sys.executable, "tools/gpu_campaign.py", *ARGS, "--deadline", "5"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert out2.returncode == 0 and "decided earlier" in out2.stdout, out2.stdout[-2000:]
    assert f"child lr: {decision['choice']}" in out2.stdout
    exported = list((tmp_path / "results" / "triage" / "smoke" / "runs" / "mnist").glob("*/summary.json"))
    assert len(exported) >= 11          # the base and the ten pilot children


def test_longest_first_queues_tm_children_and_control_before_fm():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_campaign", REPO / "tools" / "gpu_campaign.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from triage.grid import expand_grid
    cfgs = expand_grid("mnist", "smoke", [1, 0])
    out = mod.longest_first(cfgs)
    assert sorted(c.key() for c in out) == sorted(c.key() for c in cfgs)
    seeds = [c.seed for c in out]
    assert seeds == sorted(seeds, key=lambda s: (s != 1))          # seed 1's group first, as given
    for seed in (1, 0):
        group = [c for c in out if c.seed == seed]
        kinds = ["base" if not c.is_child else "long" if (c.control or c.regime == "thawed") else "fm"
                 for c in group]
        # the base, then the 15 TM children and the control, then the 15 FM children
        n_long = sum(k == "long" for k in kinds)
        assert kinds == ["base"] + ["long"] * n_long + ["fm"] * (len(group) - 1 - n_long)
        assert n_long == sum(c.regime == "thawed" or c.control for c in cfgs if c.seed == seed)


def test_gpu_campaign_leaves_a_seed_begun_on_another_device_to_it(tmp_path):
    import dataclasses
    import importlib.util
    import json
    from triage.grid import expand_grid
    from triage.store import RunStore
    spec = importlib.util.spec_from_file_location("gpu_campaign", REPO / "tools" / "gpu_campaign.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    store = RunStore(tmp_path / "runs", results=tmp_path / "results")
    cfgs = expand_grid(["mnist", "cifar10"], "smoke", [0, 1])

    def finished(cfg, device):     # a finished export, as another machine left it
        d = store.export_path(cfg)
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "device": device}))
        (d / "summary.json").write_text(json.dumps({"autocast": "float32"}))
    kids = {(c.dataset, c.seed, c.name): c for c in cfgs}
    finished(kids[("mnist", 1, "b1-random-frozen")], "cuda")     # the first child itself: still seen
    finished(kids[("cifar10", 0, "b3-mean-thawed")], "cpu")
    finished(kids[("cifar10", 1, "b5-stn-frozen")], "cpu")
    finished(kids[("mnist", 0, "base")], "cuda")                 # a base may come from anywhere
    said = []
    assert mod.begun_elsewhere(cfgs, store, "cpu", said.append) == {("mnist", 1)}
    assert said == ["mnist seed 1: begun on cuda, not cpu: left to it"]


def test_backfill_dead_channels_matches_what_a_run_records(tmp_path, triage_cache):
    """Runs trained before the dead-channel counts were recorded get the same values from their weights."""
    import triage
    from triage.config import make_config
    from triage.store import RunStore
    env = {**os.environ, "TRIAGE_RUNS": str(tmp_path / "runs"), "TRIAGE_RESULTS": str(tmp_path / "results"),
           "PYTHONPATH": str(REPO)}
    cfg = make_config("mnist", 2, "mean", "frozen", profile="smoke", train_per_class=10, test_per_class=10,
                      epochs=1, width=0.0625)
    store = RunStore(tmp_path / "runs", results=tmp_path / "results" / "triage")
    triage.run(cfg, store, progress=False, log=lambda m: None)
    exported = sorted((tmp_path / "results" / "triage" / "smoke" / "runs" / "mnist").glob("*/summary.json"))
    assert len(exported) == 2                     # the base and the child
    keys = ("dead_block1", "dead_compressed", "compressed_channels")
    recorded = {p.parent.name: {k: json.loads(p.read_text()).get(k) for k in keys} for p in exported}
    child = next(n for n in recorded if n.startswith("b2-"))
    assert recorded[child]["compressed_channels"] == 8 and recorded[child]["dead_compressed"] is not None
    base = next(n for n in recorded if n != child)
    assert recorded[base]["dead_compressed"] is None and recorded[base]["dead_block1"] is not None   # a base has no compressed block
    for p in exported + sorted((tmp_path / "runs" / "smoke" / "mnist").glob("*/summary.json")):
        s = json.loads(p.read_text())
        for k in keys:                            # as a run of git 7e8fdce or older
            s.pop(k, None)
        p.write_text(json.dumps(s))
    out = subprocess.run([sys.executable, "tools/backfill_dead_channels.py", "--profile", "smoke",
                          "--runs", str(tmp_path / "runs")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 run(s) updated; 0 without weights here" in out.stderr
    for p in exported:
        s = json.loads(p.read_text())
        assert {k: s.get(k) for k in keys} == recorded[p.parent.name] and s["dead_block1_by"].startswith("tools/")
    local = next((tmp_path / "runs" / "smoke" / "mnist").glob("b2-*/summary.json"))
    assert {k: json.loads(local.read_text())[k] for k in keys} == recorded[local.parent.name]
    # a second pass finds nothing left to do
    again = subprocess.run([sys.executable, "tools/backfill_dead_channels.py", "--profile", "smoke",
                            "--runs", str(tmp_path / "runs")], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and "0 run(s) updated" in again.stderr


def _worker(tmp_path, *args):
    """Run tools/campaign_worker.sh with a stand-in `python` that records how it was called (its
    thread count, then its arguments): the order and the arguments are the script's whole behaviour
    (each call is a plain triage command, tested elsewhere). Returns (the process, the calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    (bin_dir / "python").write_text(f'#!/bin/sh\necho "$OMP_NUM_THREADS $*" >> {log}\n')
    (bin_dir / "python").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", TMPDIR=str(tmp_path))
    out = subprocess.run(["bash", "tools/campaign_worker.sh", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out, log.read_text().splitlines()


def test_campaign_worker_runs_the_grids_in_its_order_with_extra_arguments(tmp_path):
    out, calls = _worker(tmp_path, "--out", "runs x", "--data-root", "/d")
    def what(c):
        w = c.split()
        kind = "resnet8" if "model=resnet8" in w else w[w.index("triage") + 1]
        if kind == "run":       # one network: its seed, block and init
            return kind, w[w.index("--dataset") + 1], w[w.index("--seed") + 1], w[w.index("--init") + 1]
        return kind, w[w.index("--dataset") + 1], w[w.index("--seeds") + 1]
    # issue 12 first: CIFAR-100 x 3 is required, Stanford Dogs "at least 1" (seed 2, complete);
    # then issue 17's runs, which wait for the campaign; then the optional Dogs seeds
    assert [what(c) for c in calls] == [
        ("grid", "stanford_dogs", "2"), ("grid", "cifar100", "2"),
        ("run", "cifar100", "2", "random"), ("run", "cifar100", "2", "mean"), ("run", "cifar100", "2", "stn"),
        ("grid", "cifar100", "0"), ("grid", "cifar100", "1"),
        ("resnet8", "cifar10", "0"), ("resnet8", "cifar10", "1"), ("resnet8", "cifar10", "2"),
        ("failure", "cifar10", "0"), ("failure", "cifar10", "1"), ("failure", "cifar10", "2"),
        ("grid", "stanford_dogs", "0"), ("grid", "stanford_dogs", "1")]
    for c in calls:     # one thread unless told otherwise; the extra arguments reach every command
        assert c.startswith("1 -m triage ") and "--profile campaign " in c
        assert c.endswith("--no-progress --out runs x --data-root /d")
        if " grid " in c:
            assert "--no-notebooks" in c
    for c in calls[2:5]:    # FM block 1 again from the base's final lr
        assert "--block 1 " in c and "--regime frozen --child-lr continue" in c
    assert "--regimes thawed" in calls[7] and "width=1.0" in calls[7]


def test_campaign_worker_leaves_a_failure_path_another_worker_walks(tmp_path):
    # the other worker holds seed 1's path (its lock): this one goes on to seed 2 and the rest
    with open(tmp_path / "triage-failure-campaign-cifar10-1.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)      # flock(2), the lock flock(1) takes
        out, calls = _worker(tmp_path)
    failures = [c for c in calls if c.startswith("1 -m triage failure")]
    assert [c.split()[c.split().index("--seeds") + 1] for c in failures] == ["0", "2"]
    assert "the other worker walks this path; going on" in out.stdout
