"""Tests of triage/grid.py, execute.py, executors.py and template.py: the grid of executed notebooks, the run store's resume, executors, errors.

The papermill tests (marker ``notebook``, part of the default run) share one
31-network MNIST smoke grid (module fixture, a few minutes on 2 CPU cores);
the kill, failure and Dask tests use small slices of it in their own stores.
"""
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

import triage
from triage import execute, executors, grid, template
from triage.__main__ import main as cli
from triage.experiments import PROFILES, ConfigError, RunConfig, RunStore, make_config
from triage.models import vgg16_bn
from triage.plots import load_metrics
from triage.surgery import compress_block

REPO = Path(__file__).resolve().parents[1]
CONFIG_FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
# The notebook tests run the smoke profile on smaller subsets (200 train / 100 test MNIST
# images), so that 31 networks cost little more than their kernels' start-up.
SMALL = {"train_per_class": 20, "test_per_class": 10}
SMALL_ARGS = ["--set"] + [f"{k}={v}" for k, v in SMALL.items()]


def _cli_env():
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _grid_cmd(root, *extra):
    return [sys.executable, "-m", "triage", "grid", "--dataset", "mnist", "--profile", "smoke",
            "--out", str(root), "--no-progress", *SMALL_ARGS, *extra]


def _snapshot(paths):
    """path -> (mtime_ns, sha256) of every file in the given run folders, locks excepted."""
    out = {}
    for d in paths:
        for f in Path(d).iterdir():
            if f.is_file() and f.name != execute.LOCK_FILE:
                out[str(f)] = (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
    return out


def _config_set(df):
    return {tuple((k, row[k]) for k in CONFIG_FIELDS) for row in df[CONFIG_FIELDS].astype(object)
            .where(df[CONFIG_FIELDS].notna(), None).to_dict("records")}


# ----------------------------------------------------------------------------- no notebooks

def test_expand_grid_is_the_papers_31_networks_per_data_set_base_first():
    cfgs = grid.expand_grid("mnist", "smoke")
    assert len(cfgs) == 1 + 5 * 3 * 2
    base = cfgs[0]
    assert base.block == 0 and all(c.block > 0 for c in cfgs[1:])
    assert {(c.block, c.init, c.regime) for c in cfgs[1:]} == {
        (b, i, r) for b in range(1, 6) for i in ("random", "mean", "stn") for r in ("frozen", "thawed")}
    assert all(c.parent() == base for c in cfgs[1:])  # every child reuses the grid's base
    assert len({c.key() for c in cfgs}) == 31
    everything = grid.expand_grid("all", "cpu", seeds=[0, 1, 2])
    assert len(everything) == 124 * 3 and len({c.key() for c in everything}) == 124 * 3
    # --epochs is the children's epochs after compression; the base keeps its profile's
    short = grid.expand_grid("mnist", "smoke", blocks=[2], inits=["mean"], regimes=["thawed"], epochs=3)
    assert [c.epochs for c in short] == [PROFILES["smoke"].base_epochs, 3]
    assert short[0] == cfgs[0]


def test_a_child_without_its_base_gets_the_base_added_first():
    cfgs = grid.expand_grid("mnist", "smoke", blocks=[3], inits=["stn"])
    kids = cfgs[1:]
    assert executors._with_bases(kids[::-1]) == [cfgs[0]] + kids[::-1]
    assert executors._with_bases(cfgs + kids) == cfgs  # duplicates dropped


@pytest.mark.parametrize("kwargs, message", [
    (dict(datasets="imagenet"), "unknown dataset 'imagenet'"),
    (dict(datasets="mnist", profile="huge"), "unknown profile 'huge'"),
    (dict(datasets="mnist", blocks=[6]), "unknown block 6"),
    (dict(datasets="mnist", inits=["kaiming"]), "unknown init 'kaiming'"),
    (dict(datasets="mnist", seeds=[]), "at least one seed"),
])
def test_expand_grid_rejects_bad_input_with_one_line(kwargs, message):
    with pytest.raises(ConfigError) as e:
        grid.expand_grid(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides", [{}, {"epochs": 3}, {"width": 0.25, "stn_epochs": 2}])
def test_notebook_parameters_rebuild_exactly_the_config(tmp_path, overrides):
    for cfg in grid.expand_grid("cifar10", "smoke", blocks=[1, 4], inits=["stn"], **overrides):
        p = template.notebook_parameters(cfg, tmp_path)
        # what the template's setup cell does with them
        again = make_config(p["dataset"], p["block"], p["init"], p["regime"], p["profile"], p["seed"],
                            epochs=p["epochs"], stn_epochs=p["stn_epochs"], **p["overrides"])
        assert again == cfg and again.key() == cfg.key()
        assert Path(p["runs_root"]).is_absolute()


def _relu_bn_conv(x, conv, bn):
    """ReLU(BN(conv(x))) in eval mode, written out by hand."""
    y = F.conv2d(x, conv.weight, conv.bias, padding=1)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    y = (y - bn.running_mean[None, :, None, None]) * scale[None, :, None, None] + bn.bias[None, :, None, None]
    return y.clamp_min(0)


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_block1_activations_match_hand_computation_base_and_compressed():
    from triage.similarity import block1_activations
    torch.manual_seed(0)
    base = vgg16_bn(10, in_channels=1, width=1 / 16)
    _randomise_bn(base)
    base.train()
    x = torch.randn(2, 1, 32, 32)
    b1 = base.block(1)
    expected = _relu_bn_conv(_relu_bn_conv(x, b1.conv1, b1.bn1), b1.conv2, b1.bn2)  # after conv 2
    with torch.no_grad():
        got = block1_activations(base, x)
    assert got.shape == (2, 4, 32, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert base.training and _hooks(base) == 0  # mode restored, hook removed
    child = compress_block(base, 1)
    _randomise_bn(child)
    c1 = child.block(1)
    expected_child = _relu_bn_conv(x, c1.conv1, c1.bn1)  # after the single compressed conv
    with torch.no_grad():
        torch.testing.assert_close(block1_activations(child, x), expected_child, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected_child, expected)
    # a child of another block keeps block 1's two convs
    with torch.no_grad():
        torch.testing.assert_close(block1_activations(compress_block(base, 3), x), expected)


def test_block1_activations_remove_the_hook_when_the_forward_fails():
    from triage.similarity import block1_activations
    model = vgg16_bn(10, in_channels=3, width=1 / 16)
    with pytest.raises(RuntimeError):
        block1_activations(model, torch.randn(1, 1, 32, 32))  # wrong number of channels
    assert _hooks(model) == 0 and model.training


def test_run_lock_is_exclusive_and_released_when_its_holder_is_killed(tmp_path):
    cfg = make_config("mnist")
    run_dir = RunStore(tmp_path).path(cfg)
    lock = execute.RunLock(run_dir)
    assert lock.acquire(blocking=False)
    try:
        holder = execute.RunLock.holder(run_dir)
        assert holder["pid"] == os.getpid()
        assert not execute.RunLock(run_dir).acquire(blocking=False)   # a second taker is refused
    finally:
        lock.release()
    assert execute.RunLock.holder(run_dir) is None
    # a holder killed with SIGKILL leaves no stale lock (the OS drops the flock)
    code = ("import sys, time; from triage.execute import RunLock; lock = RunLock(sys.argv[1]); lock.acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        assert execute.RunLock.holder(run_dir)["pid"] == p.pid
        state, detail = grid.network_state(RunStore(tmp_path), cfg)
        assert state == "running" and f"pid {p.pid}" in detail
    finally:
        p.kill()
        p.wait()
    assert execute.RunLock.holder(run_dir) is None
    assert grid.network_state(RunStore(tmp_path), cfg)[0] == "missing"
    assert execute.RunLock(run_dir).acquire(blocking=False)


def test_execute_network_without_wait_returns_busy_while_another_process_holds_the_lock(tmp_path):
    cfg = make_config("mnist", profile="smoke")
    store = RunStore(tmp_path)
    holder = execute.RunLock(store.path(cfg))
    assert holder.acquire(blocking=False)   # another open file: flock refuses it like another process
    try:
        r = execute.execute_network(cfg, tmp_path, notebook=False, wait=False)
    finally:
        holder.release()
    assert r["status"] == "busy" and f"pid {os.getpid()}" in r["error"]
    assert not (store.path(cfg) / "metrics.csv").exists()   # nothing was trained


@pytest.mark.parametrize("busy, expected", [
    # a busy child is left for later; the grid trains its sibling meanwhile, then waits for it
    ("b2-mean-frozen", [("try", "base"), ("try", "b2-mean-frozen"), ("try", "b2-mean-thawed"),
                        ("try", "b2-mean-frozen"), ("wait", "b2-mean-frozen")]),
    # a busy base holds back its children without trying them
    ("base", [("try", "base"), ("wait", "base"), ("try", "b2-mean-frozen"), ("try", "b2-mean-thawed")]),
])
def test_local_grid_goes_on_with_other_networks_while_one_is_busy(monkeypatch, tmp_path, busy, expected):
    events, logs = [], []

    def fake_execute(cfg, runs_root, template, *, wait=True, **kw):
        events.append(("wait" if wait else "try", cfg.name))
        status = "busy" if cfg.name == busy and not wait else ("reused" if cfg.name == busy else "done")
        return {"key": cfg.key(), "dataset": cfg.dataset, "seed": cfg.seed, "name": cfg.name, "run_dir": "",
                "status": status, "seconds": 0.0, "error": "pid 7 on elsewhere is executing it" if status == "busy"
                else None}
    monkeypatch.setattr(executors, "execute_network", fake_execute)
    cfgs = grid.expand_grid("mnist", "smoke", blocks=[2], inits=["mean"])
    report = executors.run_grid(cfgs, tmp_path, progress=False, log=logs.append, notebooks=False)
    assert events == expected
    assert [(r["name"], r["status"]) for r in report.results] == [
        (c.name, "reused" if c.name == busy else "done") for c in cfgs]   # grid order, nothing lost
    assert report.ok
    assert sum("pid 7 on elsewhere is executing it; going on with the others" in m for m in logs) == 1


def test_interrupted_training_resumes_from_its_last_epoch(tmp_path, triage_cache, monkeypatch):
    """The store's resume (experiments.run), as the grid relies on it: epoch rows are kept."""
    import triage.experiments as ex
    cfg = make_config("mnist", profile="smoke", train_per_class=20, test_per_class=10, epochs=3)
    store = RunStore(tmp_path)
    real, calls = ex.train_one_epoch, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C during epoch 3
        return real(*a, **k)
    monkeypatch.setattr(ex, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        triage.run(cfg, store, progress=False, log=lambda m: None)
    d = store.path(cfg)
    assert (d / "checkpoint.pt").exists() and not store.is_done(cfg)
    before = (d / "metrics.csv").read_text().splitlines()
    assert len(before) == 1 + 2
    monkeypatch.setattr(ex, "train_one_epoch", real)
    logs = []
    triage.run(cfg, store, progress=False, log=logs.append)
    assert any("resuming after epoch 2" in m for m in logs)
    after = (d / "metrics.csv").read_text().splitlines()
    assert after[:3] == before and len(after) == 1 + cfg.epochs
    assert store.is_done(cfg) and not (d / "checkpoint.pt").exists()
    assert grid.network_state(store, cfg)[0] == "done"


def test_slurm_executor_submits_children_only_after_their_base(monkeypatch, tmp_path):
    """The submit/poll loop shared by the dask and slurm executors, with a stand-in submitit."""
    import types
    events, params = [], {}

    class Job:
        def __init__(self, fn, args, kwargs):
            self.fn, self.args, self.kwargs, self.out = fn, args, kwargs, None

        def done(self):  # the job runs when first polled, as if the cluster had run it meanwhile
            if self.out is None:
                self.out = self.fn(*self.args, **self.kwargs)
            return True

        def result(self):
            return self.out

        def cancel(self):
            pass

    class AutoExecutor:
        def __init__(self, folder):
            params["folder"] = folder

        def update_parameters(self, **kw):
            params.update(kw)

        def submit(self, fn, *args, **kwargs):
            events.append(("submit", args[0].seed, args[0].name))
            return Job(fn, args, kwargs)

    def fake_execute(cfg, runs_root, template, **kw):
        events.append(("run", cfg.seed, cfg.name))
        status = "failed" if (cfg.seed, cfg.block) == (1, 0) else "done"
        return {"key": cfg.key(), "dataset": cfg.dataset, "seed": cfg.seed, "name": cfg.name,
                "run_dir": "", "status": status, "seconds": 0.0, "error": "boom" if status == "failed" else None}

    monkeypatch.setitem(sys.modules, "submitit", types.SimpleNamespace(AutoExecutor=AutoExecutor))
    monkeypatch.setattr(executors, "execute_network", fake_execute)
    cfgs = grid.expand_grid("mnist", "smoke", seeds=[0, 1], blocks=[2], inits=["mean"])
    report = executors.run_grid(cfgs, tmp_path, executor="slurm", slurm={"timeout_min": 5}, progress=False,
                                log=lambda m: None)
    assert params["timeout_min"] == 5 and params["folder"].endswith(".submitit")
    for seed in (0, 1):  # every child is submitted after its own base ran
        base_ran = events.index(("run", seed, "base"))
        kids = [i for i, e in enumerate(events) if e[0] == "submit" and e[1] == seed and e[2] != "base"]
        assert all(i > base_ran for i in kids)
    assert [e for e in events if e[1] == 1 and e[2] != "base"] == []   # seed 1's base failed
    statuses = {(r["seed"], r["name"]): r["status"] for r in report.results}
    assert statuses == {(0, "base"): "done", (0, "b2-mean-frozen"): "done", (0, "b2-mean-thawed"): "done",
                        (1, "base"): "failed", (1, "b2-mean-frozen"): "skipped", (1, "b2-mean-thawed"): "skipped"}
    assert [(r["seed"], r["name"]) for r in report.results] == [(c.seed, c.name) for c in cfgs]  # grid order
    assert not report.ok and len(report.failed) == 3


# ----------------------------------------------------------------------------- bad input (CLI)

def _one_line_error(capsys, argv):
    rc = cli(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("triage: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("argv, message", [
    (["grid", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["grid", "--dataset", "mnist", "--profile", "huge"], "unknown profile 'huge'"),
    (["grid", "--dataset", "mnist", "--executor", "spark"], "unknown executor 'spark'"),
    (["grid", "--dataset", "mnist", "--executor", "dask"], "needs --scheduler"),
    (["grid"], "give --dataset"),
    (["status", "--profile", "huge"], "unknown profile 'huge'"),
])
def test_cli_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    err = _one_line_error(capsys, argv + ["--out", str(tmp_path)])
    assert message in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_unreachable_scheduler_fails_fast(capsys, tmp_path, tmp_path_factory, monkeypatch):
    # an empty results root: smoke runs exported in the checkout (README's first command) are not asked about
    monkeypatch.setenv("TRIAGE_RESULTS", str(tmp_path_factory.mktemp("results")))
    t0 = time.perf_counter()
    err = _one_line_error(capsys, ["grid", "--dataset", "mnist", "--out", str(tmp_path), "--executor", "dask",
                                   "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "2"])
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert time.perf_counter() - t0 < 30
    assert not any(tmp_path.iterdir())


def test_cli_slurm_without_submitit_is_a_clear_error(capsys, tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed (import raises)
    monkeypatch.setenv("TRIAGE_RESULTS", str(tmp_path_factory.mktemp("results")))
    err = _one_line_error(capsys, ["grid", "--dataset", "mnist", "--out", str(tmp_path), "--executor", "slurm"])
    assert "needs submitit" in err


def test_cli_template_without_parameters_cell(capsys, tmp_path, monkeypatch):
    # results of its own: README's first command exports MNIST smoke networks into the checkout's
    # results/, which a grid on another store refuses to retrain before it reads the template
    monkeypatch.setenv("TRIAGE_RESULTS", str(tmp_path / "results"))
    nb = nbformat.read(template.default_template(), as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("tags", None)
    bad = tmp_path / "no_params.ipynb"
    nbformat.write(nb, bad)
    out = tmp_path / "runs"
    err = _one_line_error(capsys, ["grid", "--dataset", "mnist", "--out", str(out), "--template", str(bad)])
    assert "has no cell tagged 'parameters'" in err and not out.exists()
    nb = nbformat.read(template.default_template(), as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = params.source.replace("stn_epochs = None", "")
    nbformat.write(nb, bad)
    err = _one_line_error(capsys, ["grid", "--dataset", "mnist", "--out", str(out), "--template", str(bad)])
    assert "does not define stn_epochs" in err
    err = _one_line_error(capsys, ["grid", "--dataset", "mnist", "--out", str(out),
                                   "--template", str(tmp_path / "missing.ipynb")])
    assert "does not exist" in err


def test_cli_refuses_a_store_folder_of_an_incompatible_version(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_RESULTS", str(tmp_path / "results"))   # as above: not the checkout's
    cfg = grid.expand_grid("mnist", "smoke")[0]
    d = RunStore(tmp_path).path(cfg)
    d.mkdir(parents=True)
    text = json.dumps({"config": dataclasses.asdict(cfg), "store_format": 0})
    (d / "config.json").write_text(text)
    err = _one_line_error(capsys, ["grid", "--dataset", "mnist", "--out", str(tmp_path)])
    assert "incompatible" in err
    assert (d / "config.json").read_text() == text            # not touched
    assert sorted(p.name for p in d.iterdir()) == ["config.json"]
    assert [p.name for p in (tmp_path / "smoke" / "mnist").iterdir()] == [d.name]  # nothing else made


# ----------------------------------------------------------------------------- notebooks

@pytest.fixture(scope="module")
def full_grid(tmp_path_factory, triage_cache):
    """The 31-network MNIST smoke grid, run once through the command line."""
    root = tmp_path_factory.mktemp("grid_full")
    t0 = time.perf_counter()
    proc = subprocess.run(_grid_cmd(root), capture_output=True, text=True, env=_cli_env(), cwd=REPO,
                          timeout=1500)
    return {"root": root, "proc": proc, "seconds": time.perf_counter() - t0,
            "cfgs": grid.expand_grid("mnist", "smoke", **SMALL)}


def _seed_base(src_root, dst_root, cfg):
    """Copy the finished base of ``cfg`` from one store into another (saves training it again)."""
    src, dst = RunStore(src_root).path(cfg), RunStore(dst_root).path(cfg)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(execute.LOCK_FILE))
    return dst


@pytest.mark.notebook
def test_smoke_grid_runs_31_networks_end_to_end(full_grid):
    proc, root, cfgs = full_grid["proc"], full_grid["root"], full_grid["cfgs"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "31 networks: 31 trained, 0 reused" in proc.stderr
    store = RunStore(root)
    table = grid.results_table(root)
    assert len(table) == 31 and set(table.key) == {c.key() for c in cfgs}
    assert _config_set(table) == {tuple((k, v) for k, v in dataclasses.asdict(c).items()) for c in cfgs}
    assert table.notebook.notna().all()
    base_dirs = list((root / "smoke" / "mnist").glob("base-*"))
    assert len(base_dirs) == 1  # one base, trained once, reused by the 30 children
    base_done = (base_dirs[0] / "summary.json").stat().st_mtime_ns
    p = PROFILES["smoke"]
    for cfg in cfgs:
        d = store.path(cfg)
        row = table.set_index("key").loc[cfg.key()]
        assert row.epochs == (p.base_epochs if cfg.block == 0 else p.comp_epochs)
        metrics = load_metrics(d)
        assert row.max_test_acc == pytest.approx(metrics.test_acc.max())
        assert 0 <= row.max_test_acc <= 1
        if cfg.block:
            assert (d / "config.json").stat().st_mtime_ns >= base_done  # base before children
        nb = nbformat.read(d / template.NOTEBOOK, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code)
        assert not [o for c in code for o in c.outputs if o.output_type == "error"]
        pngs = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
        assert pngs == 2  # learning curves + block-1 activations
        scraps = template.notebook_scraps(d / template.NOTEBOOK)
        assert scraps["key"] == cfg.key() and scraps["scheme"] == cfg.scheme
        assert scraps["max_test_acc"] == pytest.approx(row.max_test_acc)
        assert scraps["epochs_to_99pct"] == row.epochs_to_99pct
        assert not (d / execute.ERROR_FILE).exists() and not (d / template.PARTIAL_NOTEBOOK).exists()


@pytest.mark.notebook
def test_status_and_rerun_reuse_the_finished_grid(full_grid, capsys):
    root, cfgs = full_grid["root"], full_grid["cfgs"]
    assert full_grid["proc"].returncode == 0
    st = grid.grid_status(grid.expand_grid(["mnist", "cifar10"], "smoke", **SMALL), root)
    counts = grid.status_counts(st)
    assert counts.loc["mnist"].to_dict() == {"done": 31, "running": 0, "failed": 0, "partial": 0,
                                             "missing": 0, "total": 31}
    assert counts.loc["cifar10", "missing"] == 31
    assert cli(["status", "--profile", "smoke", "--dataset", "mnist", "--out", str(root), *SMALL_ARGS]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].split() == ["mnist", "31", "0", "0", "0", "0", "31"]
    before = _snapshot(RunStore(root).path(c) for c in cfgs)
    assert cli(["grid", "--dataset", "mnist", "--profile", "smoke", "--out", str(root), "--no-progress",
                *SMALL_ARGS]) == 0
    assert "31 networks: 0 trained, 31 reused" in capsys.readouterr().err
    assert _snapshot(RunStore(root).path(c) for c in cfgs) == before  # nothing rewritten


@pytest.mark.notebook
def test_learning_curve_and_activation_plots_of_a_stored_run(full_grid):
    import matplotlib
    matplotlib.use("Agg")
    from triage.plots import plot_block1_activations, plot_learning_curves
    root, cfgs = full_grid["root"], full_grid["cfgs"]
    child = next(c for c in cfgs if c.block == 1)
    d = RunStore(root).path(child)
    fig = plot_learning_curves(d)
    assert "[profile: smoke]" in fig._suptitle.get_text()
    assert any(line.get_linestyle() == "--" for line in fig.axes[0].lines)  # the base's accuracy
    fig = plot_block1_activations(d, n_filters=10)
    filters = triage.load_model(d).block(1).conv1.out_channels
    assert len(fig.axes) == 1 + min(10, filters)


@pytest.mark.notebook
def test_sigkill_mid_grid_then_rerun_keeps_finished_runs(full_grid, tmp_path):
    """kill -9 the grid part-way; the rerun reuses finished runs untouched and completes the slice."""
    root = tmp_path / "runs"
    cmd = _grid_cmd(root, "--blocks", "1")
    slice_cfgs = grid.expand_grid("mnist", "smoke", blocks=[1], **SMALL)
    store = RunStore(root)
    with open(tmp_path / "log1.txt", "w") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_cli_env(), cwd=REPO)
    try:
        deadline = time.time() + 600
        # wait for 3 finished networks and a 4th executing, then kill -9
        while time.time() < deadline and p.poll() is None:
            done = [c for c in slice_cfgs if execute.is_complete(store, c)]
            busy = [c for c in slice_cfgs if (store.path(c) / template.PARTIAL_NOTEBOOK).exists()]
            if len(done) >= 3 and busy:
                break
            time.sleep(0.2)
        assert p.poll() is None, "the grid finished before it could be killed"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
    finished = [c for c in slice_cfgs if execute.is_complete(store, c)]
    assert 3 <= len(finished) < len(slice_cfgs)
    before = _snapshot(store.path(c) for c in finished)
    time.sleep(2)  # the orphaned kernel notices its parent died within 1 s and exits
    states = grid.grid_status(slice_cfgs, root).set_index("key").state
    assert "running" not in set(states)                      # no stale lock
    assert len(grid.results_table(root)) == sum(store.is_done(c) for c in slice_cfgs)

    proc = subprocess.run(cmd, capture_output=True, text=True, env=_cli_env(), cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{len(finished)} reused" in proc.stderr
    assert _snapshot(store.path(c) for c in finished) == before  # reused, not retrained
    table = grid.results_table(root)
    assert len(table) == len(slice_cfgs) and table.notebook.notna().all()
    full = grid.results_table(full_grid["root"])
    assert _config_set(table) == _config_set(full[full.block <= 1])  # same configs as uninterrupted


@pytest.mark.notebook
def test_failed_network_is_recorded_and_the_grid_goes_on(full_grid, tmp_path, capsys):
    root = tmp_path / "runs"
    cfgs = grid.expand_grid("mnist", "smoke", blocks=[1], inits=["random"], **SMALL)  # base + FM + TM
    _seed_base(full_grid["root"], root, cfgs[0])
    nb = nbformat.read(template.default_template(), as_version=4)
    setup = next(i for i, c in enumerate(nb.cells) if "make_config" in c.source)
    nb.cells.insert(setup + 1, nbformat.v4.new_code_cell(
        'if regime == "frozen":\n    raise RuntimeError("injected failure")'))
    bad = tmp_path / "failing.ipynb"
    nbformat.write(nb, bad)
    argv = ["grid", "--dataset", "mnist", "--out", str(root), "--blocks", "1", "--inits", "random",
            "--no-progress", *SMALL_ARGS]
    assert cli(argv + ["--template", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "FAILED mnist/b1-random-frozen" in err and "1 failed" in err
    store = RunStore(root)
    failed, ok = cfgs[1], cfgs[2]
    assert failed.regime == "frozen" and ok.regime == "thawed"
    record = json.loads((store.path(failed) / execute.ERROR_FILE).read_text())
    assert record["message"].startswith("RuntimeError: injected failure")
    assert any("injected failure" in line for line in record["traceback_tail"])
    kept = nbformat.read(store.path(failed) / template.NOTEBOOK, as_version=4)
    assert [o.ename for c in kept.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"] == ["RuntimeError"]
    assert execute.is_complete(store, ok)                       # the grid went on
    states = grid.grid_status(cfgs, root).set_index("name").state.to_dict()
    assert states == {"base": "done", "b1-random-frozen": "failed", "b1-random-thawed": "done"}
    assert cli(["status", "--profile", "smoke", "--dataset", "mnist", "--blocks", "1", "--inits", "random",
                "--out", str(root), *SMALL_ARGS]) == 0
    assert "b1-random-frozen seed 0: RuntimeError: injected failure" in capsys.readouterr().out
    # a rerun with the good template retries only the failed network
    assert cli(argv) == 0
    assert "1 trained, 2 reused" in capsys.readouterr().err
    assert not (store.path(failed) / execute.ERROR_FILE).exists() and execute.is_complete(store, failed)


@pytest.mark.notebook
def test_failed_base_skips_its_children(tmp_path):
    nb = nbformat.read(template.default_template(), as_version=4)
    setup = next(i for i, c in enumerate(nb.cells) if "make_config" in c.source)
    nb.cells.insert(setup + 1, nbformat.v4.new_code_cell('if block == 0:\n    raise ValueError("no base")'))
    bad = tmp_path / "failing.ipynb"
    nbformat.write(nb, bad)
    cfgs = grid.expand_grid("mnist", "smoke", blocks=[2], inits=["mean"], regimes=["thawed"], **SMALL)
    report = executors.run_grid(cfgs, tmp_path / "runs", template=bad, progress=False, log=lambda m: None)
    assert [r["status"] for r in report.results] == ["failed", "skipped"]
    assert not report.ok and "base (mnist/base, seed 0) failed" in report.results[1]["error"]
    assert not RunStore(tmp_path / "runs").path(cfgs[1]).exists()  # the child was never started


@pytest.mark.notebook
def test_template_by_hand_with_papermill_and_bad_parameters(tmp_path, capsys):
    """A bad parameter fails in the first cell after the parameters, with the CLI's message."""
    import papermill as pm
    rc = cli(["run", "--dataset", "imagenet", "--out", str(tmp_path / "runs")])
    assert rc == 2
    cli_message = capsys.readouterr().err.strip().removeprefix("triage: error: ")
    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(template.default_template()), str(out), progress_bar=False,
                            parameters={"dataset": "imagenet", "runs_root": str(tmp_path / "runs")},
                            kernel_manager_class=template._kernel_manager_class())
    assert e.value.ename == "ConfigError" and e.value.evalue == cli_message
    nb = nbformat.read(out, as_version=4)
    failing = next(c for c in nb.cells if any(o.output_type == "error" for o in c.get("outputs", [])))
    tags = [c.metadata.get("tags", []) for c in nb.cells[:nb.cells.index(failing)] if c.cell_type == "code"]
    assert tags == [["parameters"], ["injected-parameters"]]  # the first cell of the template's own
    assert not (tmp_path / "runs").exists()


@pytest.mark.notebook
def test_local_jobs_run_networks_side_by_side_with_fewer_threads_each(full_grid, tmp_path, capsys):
    root = tmp_path / "runs"
    base = make_config("mnist", profile="smoke", **SMALL)
    _seed_base(full_grid["root"], root, base)
    rc = cli(["grid", "--dataset", "mnist", "--out", str(root), "--blocks", "1", "--inits", "random",
              "mean", "--regimes", "thawed", "--jobs", "2", "--no-progress", *SMALL_ARGS])
    err = capsys.readouterr().err
    assert rc == 0, err[-3000:]
    assert "3 networks: 2 trained, 1 reused" in err
    table = grid.results_table(root)
    assert len(table) == 3 and table.notebook.notna().all()
    children = table[table.block == 1]
    for d in children.run_dir:
        meta = json.loads((Path(d) / "config.json").read_text())
        assert meta["threads"] == max(1, (os.cpu_count() or 1) // 2)
    local = grid.results_table(full_grid["root"]).set_index("key").loc[children.key]
    assert _config_set(children) == _config_set(local.reset_index())


@pytest.mark.parametrize("kw", [{"jobs": 0}, {"jobs": 2, "executor": "dask"}, {"jobs": 2, "threads": -1}])
def test_run_grid_rejects_bad_jobs(tmp_path, kw):
    with pytest.raises(ConfigError):
        executors.run_grid(grid.expand_grid("mnist", "smoke", blocks=(1,), inits=("random",),
                                            regimes=("thawed",)), tmp_path, **kw)


@pytest.mark.notebook
def test_dask_executor_on_a_local_cluster_matches_the_local_executor(full_grid, tmp_path, capsys):
    from dask.distributed import LocalCluster
    root = tmp_path / "runs"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rc = cli(["grid", "--dataset", "mnist", "--out", str(root), "--blocks", "1", "--inits", "random",
                  "mean", "--regimes", "thawed", "--executor", "dask", "--scheduler",
                  cluster.scheduler_address, "--no-progress", *SMALL_ARGS])
    assert rc == 0, capsys.readouterr().err[-3000:]
    table = grid.results_table(root)
    assert len(table) == 3 and table.notebook.notna().all()
    local = grid.results_table(full_grid["root"]).set_index("key").loc[table.key]
    assert _config_set(table) == _config_set(local.reset_index())
    assert table.epochs.tolist() == local.epochs.tolist() and table.params.tolist() == local.params.tolist()
    if torch.cuda.is_available():  # cuDNN training is not bitwise reproducible
        assert table.max_test_acc.tolist() == pytest.approx(local.max_test_acc.tolist(), abs=0.1)
        return
    # Same configs, seeds and data order, and the kernels on the worker use as many threads
    # as the local ones (the grid drops the nanny's OMP_NUM_THREADS=1): CPU training is
    # then deterministic, so every epoch's numbers are the local executor's.
    for col in ("max_test_acc", "final_test_acc", "epoch_of_max", "epochs_to_99pct"):
        assert table[col].tolist() == local[col].tolist(), col
    for mine, theirs in zip(table.run_dir, local.run_dir):
        cols = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]
        assert load_metrics(mine)[cols].equals(load_metrics(theirs)[cols])


def test_grid_on_another_store_refuses_to_retrain_what_results_holds(tmp_path, monkeypatch, capsys):
    """A grid pointed at a runs folder other than the checkout's reads no exports: it would
    train committed networks again (it did, for two campaign bases). It refuses, names a way out,
    and trains nothing; a store that reads the exports, or --retrain-exported, goes ahead."""
    import triage.store
    results = tmp_path / "results" / "triage"
    cfgs = grid.expand_grid("mnist", "smoke", blocks=(1,), inits=("random",), regimes=("thawed",))
    held = RunStore(tmp_path / "unused", results=results).export_path(cfgs[0])   # the base
    held.mkdir(parents=True)
    (held / "summary.json").write_text("{}")
    monkeypatch.setattr(triage.store, "default_results_root", lambda: results)
    rc = cli(["grid", "--dataset", "mnist", "--profile", "smoke", "--blocks", "1", "--inits", "random",
              "--regimes", "thawed", "--out", str(tmp_path / "runs"), "--no-notebooks", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "1 of these 2 networks are already in" in err and "mnist/base seed 0" in err
    assert "TRIAGE_RESULTS=" in err and "--retrain-exported" in err
    assert not (tmp_path / "runs").exists()
    grid._check_exports_seen(cfgs, RunStore(tmp_path / "runs", results=results))   # reads them: no error
    with pytest.raises(ConfigError):
        grid._check_exports_seen(cfgs, RunStore(tmp_path / "runs", results=None))
    # `triage status` on such a store counts the exported base as missing, and says why
    rc = cli(["status", "--dataset", "mnist", "--profile", "smoke", "--blocks", "1", "--inits", "random",
              "--regimes", "thawed", "--out", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0 and "1 of the networks counted missing or unfinished here are done in" in out
    assert f"TRIAGE_RESULTS={results.parent}" in out
    monkeypatch.setenv("TRIAGE_RESULTS", str(results.parent))     # a store that reads them: no note
    cli(["status", "--dataset", "mnist", "--profile", "smoke", "--out", str(tmp_path / "runs")])
    assert "counted missing" not in capsys.readouterr().out
