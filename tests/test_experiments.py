"""Configs, the run store, resume, and real-data smoke runs (MNIST from ../shared/data)."""
import dataclasses
import json
import subprocess
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import triage
from triage.__main__ import main
from triage.experiments import (PROFILES, TABLE1, ConfigError, RunStore, check_model_data, make_config,
                                run)


# --------------------------------------------------------------------------- configs

def test_paper_profile_is_tables_1_and_2():
    for ds, h in TABLE1.items():
        base = make_config(ds, profile="paper")
        assert (base.lr, base.min_lr, base.lr_decay, base.weight_decay, base.epochs) == (
            h.lr, h.min_lr, h.lr_decay, h.weight_decay, h.base_epochs)
        child = make_config(ds, 2, "stn", "frozen", profile="paper")
        assert (child.epochs, child.stn_epochs, child.momentum, child.patience, child.cooldown) == (25, 12, 0.9, 1, 3)
        assert child.width == 1.0 and child.train_per_class is None and child.test_per_class is None
    assert make_config("cifar100", profile="paper").lr == 0.01
    assert make_config("stanford_dogs", profile="paper").min_lr == 1e-7
    assert make_config("cifar10", profile="paper", resolution=224).resolution == 224


def test_config_hash_and_parent():
    a = make_config("mnist", 3, "mean", "thawed")
    assert a.key() == make_config("mnist", 3, "mean", "thawed").key()
    assert a.key() != make_config("mnist", 3, "mean", "frozen").key()
    assert a.key() != make_config("mnist", 3, "mean", "thawed", seed=1).key()
    assert a.parent() == make_config("mnist")
    assert (a.name, a.scheme) == ("b3-mean-thawed", "TM-MW")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.block = 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(dataset="imagenet"), "unknown dataset"),
    (dict(dataset="mnist", profile="huge"), "unknown profile"),
    (dict(dataset="mnist", block=6, init="mean", regime="frozen"), "block must be"),
    (dict(dataset="mnist", block=0, init="mean"), "block 0 is the uncompressed base"),
    (dict(dataset="mnist", block=2, init="median", regime="frozen"), "unknown init"),
    (dict(dataset="mnist", block=2, init="mean", regime="slushy"), "unknown regime"),
    (dict(dataset="mnist", epochs=0), "epochs must be positive"),
    (dict(dataset="mnist", width=-0.5), "width must be positive"),
    (dict(dataset="mnist", colour="red"), "unknown config field"),
])
def test_bad_configs(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_config(**kwargs)


def test_model_data_mismatch_is_clear():
    with pytest.raises(ConfigError, match="1 input channel.*3"):
        check_model_data(triage.vgg16_bn(10, in_channels=3, width=1 / 16), triage.spec("mnist"))
    with pytest.raises(ConfigError, match="100 classes.*10"):
        check_model_data(triage.vgg16_bn(10, width=1 / 16), triage.spec("cifar100"))


# --------------------------------------------------------------------------- real-data smoke runs

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return RunStore(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def mnist_base(store):
    cfg = make_config("mnist", profile="smoke")
    return cfg, run(cfg, store, progress=False, log=lambda m: None)


def test_mnist_smoke_base_learns(mnist_base):
    cfg, d = mnist_base
    summary = json.loads((d / "summary.json").read_text())
    # chance is 0.10; a pipeline with wrong labels, broken normalisation or no gradient
    # flow stays near it. 6 short epochs on 2,000 images reach ~0.5-0.7.
    assert summary["max_test_acc"] >= 0.30, summary
    metrics = pd.read_csv(d / "metrics.csv")
    assert list(metrics.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                                     "test_acc", "lr", "seconds", "cpu_seconds"]
    assert metrics["val_acc"].isna().all()   # the smoke profile has no validation split
    # one process's CPU time per epoch: positive, and within what its threads could use in the wall time
    assert (metrics["cpu_seconds"] > 0).all()
    assert (metrics["cpu_seconds"] <= metrics["seconds"] * torch.get_num_threads() + 0.1).all()
    assert summary["train_cpu_seconds"] == pytest.approx(metrics["cpu_seconds"].sum(), abs=0.01)
    assert len(metrics) == cfg.epochs and metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]
    meta = json.loads((d / "config.json").read_text())
    assert meta["config"] == dataclasses.asdict(cfg)
    assert meta["triage_version"] == triage.__version__ and meta["git_hash"]
    assert summary["train_images"] == 2000 and summary["test_images"] == 500
    assert not (d / "checkpoint.pt").exists()


def test_finished_run_is_reused(mnist_base, store):
    cfg, d = mnist_base
    stamp = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    assert run(cfg, store, progress=False, log=lambda m: None) == d
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == stamp


def test_frozen_child_reuses_base_and_keeps_everything_else(mnist_base, store):
    _, base_dir = mnist_base
    base_stamp = (base_dir / "weights.pt").stat().st_mtime_ns
    cfg = make_config("mnist", 4, "stn", "frozen", profile="smoke")
    d = run(cfg, store, progress=False, log=lambda m: None)
    assert (base_dir / "weights.pt").stat().st_mtime_ns == base_stamp
    base = torch.load(base_dir / "weights.pt", weights_only=True)
    child = torch.load(d / "weights.pt", weights_only=True)
    for k, v in child.items():
        if not k.startswith("features.block4."):
            assert torch.equal(v, base[k]), k  # FM: frozen weights and BN statistics untouched
    summary = json.loads((d / "summary.json").read_text())
    assert summary["scheme"] == "FM-STN" and len(summary["stn_losses"]) == cfg.stn_epochs
    assert summary["max_test_acc"] > 0.15


def test_interrupted_run_resumes_from_last_epoch(mnist_base, store, monkeypatch):
    import triage.experiments as ex

    cfg = make_config("mnist", 2, "mean", "thawed", profile="smoke", epochs=2)
    real = ex.train_one_epoch
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C during epoch 2
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, "train_one_epoch", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, store, progress=False, log=lambda m: None)
    d = store.path(cfg)
    assert (d / "checkpoint.pt").exists() and not (d / "summary.json").exists()
    first = pd.read_csv(d / "metrics.csv")
    assert len(first) == 1
    # the checkpoint names the arithmetic it trained in; a resume keeps it even where "auto"
    # would now resolve otherwise (a run moved to a machine with or without native bf16)
    ckpt = torch.load(d / "checkpoint.pt", weights_only=False)
    here = ex.DTYPES[ex.autocast_dtype("cpu", cfg.precision)]
    assert ckpt["autocast"] == here
    assert ckpt["channels_last"] is True   # the layout of every arithmetic now
    other = "float32" if here == "bfloat16" else "bfloat16"
    torch.save({**ckpt, "autocast": "int8"}, d / "checkpoint.pt")
    with pytest.raises(ex.ConfigError, match="trained in 'int8', which this triage does not know"):
        run(cfg, store, progress=False, log=lambda m: None)
    # ... and a checkpoint from before the layout was recorded keeps that time's rule
    # (channels_last only under bf16)
    old = {k: v for k, v in ckpt.items() if k != "channels_last"}
    torch.save({**old, "autocast": other}, d / "checkpoint.pt")
    monkeypatch.setattr(ex, "train_one_epoch", real)
    logs = []
    run(cfg, store, progress=False, log=logs.append)
    assert any("resuming after epoch 1" in m for m in logs)
    summary = json.loads((d / "summary.json").read_text())
    assert summary["autocast"] == other and summary["hardware"] == ex.hardware("cpu")
    assert summary["channels_last"] is (other == "bfloat16")
    assert summary["train_cpu_seconds"] > 0       # both epochs recorded their CPU time
    final = pd.read_csv(d / "metrics.csv")
    assert len(final) == 2
    pd.testing.assert_frame_equal(final.iloc[:1], first)  # epoch 1 was not retrained
    assert not (d / "checkpoint.pt").exists()


# --------------------------------------------------------------------------- command line

def _cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("argv, match", [
    (["--dataset", "imagenet"], "unknown dataset"),
    (["--dataset", "mnist", "--block", "3", "--init", "median"], "unknown init"),
    (["--dataset", "mnist", "--block", "3", "--regime", "melted"], "unknown regime"),
    (["--dataset", "mnist", "--profile", "huge"], "unknown profile"),
    (["--dataset", "mnist", "--block", "9"], "block must be"),
    (["--dataset", "mnist", "--block", "-1"], "block must be"),
    (["--dataset", "mnist", "--init", "mean"], "block 0 is the uncompressed base"),
    (["--dataset", "mnist", "--epochs", "0"], "epochs must be positive"),
    (["--dataset", "mnist", "--width", "0"], "width must be positive"),
    (["--dataset", "mnist", "--width", "-2"], "width must be positive"),
    (["--dataset", "mnist", "--block", "three"], "expected an integer"),
])
def test_cli_bad_input_one_line_exit_2(argv, match, capsys, tmp_path):
    try:
        code = main(["run", *argv, "--out", str(tmp_path / "runs"), "--no-progress"])
    except SystemExit as e:  # argparse type errors exit from inside parse_args
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and match in err, err
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_cli_missing_data_and_unwritable_out(capsys, tmp_path):
    code, err = _cli(["run", "--dataset", "cifar10", "--data-root", str(tmp_path / "empty"),
                      "--out", str(tmp_path / "runs"), "--no-progress"], capsys)
    # the data error names the root, the files expected and how to get them (a few lines)
    assert code == 2 and err.startswith("triage: error: cifar10") and str(tmp_path / "empty") in err, err
    assert "train.npz" in err and "download" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = _cli(["run", "--dataset", "mnist", "--out", str(blocker / "runs"), "--no-progress"], capsys)
    assert code == 2 and "cannot write the run folder" in err and len(err.splitlines()) == 1, err


def test_cli_refuses_folder_of_another_config(mnist_base, capsys):
    _, d = mnist_base
    code, err = _cli(["run", "--dataset", "mnist", "--seed", "7", "--run-dir", str(d), "--no-progress"], capsys)
    assert code == 2 and "another config" in err and "seed" in err, err


def test_python_dash_m_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "triage", "run", "--dataset", "svhn"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "triage: error: unknown dataset 'svhn'; choose one of mnist, cifar10, cifar100, stanford_dogs"]


@pytest.mark.parametrize("resolution", [64, 224])
def test_upsampled_inputs_run_end_to_end(resolution, tmp_path):
    # the paper upsamples to 224 px (per batch, on the device); 224 selects torchvision's head
    cfg = make_config("cifar10", profile="smoke", resolution=resolution, width=1 / 16, epochs=1,
                      train_per_class=2, test_per_class=2, batch_size=10)
    d = run(cfg, RunStore(tmp_path), progress=False, log=lambda m: None)
    model = triage.load_model(d)
    linears = [m for m in model.classifier if isinstance(m, torch.nn.Linear)]
    assert len(linears) == (3 if resolution == 224 else 2)
    assert json.loads((d / "summary.json").read_text())["train_images"] == 20


def test_git_hash_ignores_exported_results(tmp_path):
    from triage.experiments import _git_hash

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path,
                       check=True, capture_output=True)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "runs.csv").write_text("a\n1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    assert _git_hash(tmp_path / "pkg") == head
    (tmp_path / "results" / "runs.csv").write_text("a\n2\n")      # a re-export: still clean
    assert _git_hash(tmp_path / "pkg") == head
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")          # a code change: dirty
    assert _git_hash(tmp_path / "pkg") == head + "-dirty"


# ----------------------------------------------------------------------------- the converged protocol (format 2)
import dataclasses as _dc

from triage.experiments import _FORMAT2_DEFAULTS, _plateau_stop, export_run, summarise_run

TINY = dict(width=1 / 16, train_per_class=24, test_per_class=12, batch_size=32, precision="fp32",
            val_fraction=0.25)


def test_format1_addresses_are_kept_and_format2_fields_change_them():
    # the stored cpu results are addressed by these hashes (results/triage/cpu/runs.csv)
    assert make_config("cifar10", 0, profile="cpu").key() == "1da443184428"
    base = make_config("cifar10", 0, profile="cpu")
    for name, default in _FORMAT2_DEFAULTS.items():
        assert getattr(base, name) == default
    assert _dc.replace(base, val_fraction=0.1).key() != base.key()
    c = make_config("cifar10", 3, "mean", "thawed", profile="campaign")
    assert (c.val_fraction, c.stopping, c.test_per_class, c.train_per_class) == (0.1, "plateau", None, None)
    assert c.epochs == 30 and c.parent().epochs == 60 and c.lr == 0.05 and c.min_lr == 5e-4


def test_control_config():
    k = make_config("mnist", 0, profile="campaign", control=True)
    base = make_config("mnist", 0, profile="campaign")
    child = make_config("mnist", 2, "random", "frozen", profile="campaign")
    assert (k.name, k.scheme, k.is_child) == ("control", "Control", True)
    assert k.parent() == base == child.parent()
    assert k.epochs == child.epochs and k.child_lr == child.child_lr
    assert k.key() != base.key()
    with pytest.raises(ConfigError, match="block 0"):
        make_config("mnist", 2, "random", "frozen", profile="campaign", control=True)


@pytest.mark.parametrize("field,value,match", [
    ("stopping", "early", "unknown stopping mode"), ("val_fraction", 0.6, r"\(0, 0.5\]"),
    ("val_fraction", -0.1, r"\(0, 0.5\]"), ("epochs", 0, "epochs must be positive"),
    ("child_lr", "warm", "unknown child lr"), ("stop_patience", 0, "stop_patience")])
def test_bad_protocol_values(field, value, match):
    with pytest.raises(ConfigError, match=match):
        make_config("mnist", 0, profile="campaign", **{field: value})


def test_plateau_needs_a_validation_split():
    with pytest.raises(ConfigError, match="validation split"):
        make_config("mnist", 0, profile="smoke", stopping="plateau")


def test_plateau_rule_by_hand():
    cfg = make_config("mnist", 0, profile="campaign")      # min_lr 5e-4, patience 4
    row = lambda lr: {"lr": lr}
    floor, high = cfg.min_lr, 0.01
    # 4 epochs at the floor, best 4 epochs ago: stop
    assert _plateau_stop([row(high)] * 3 + [row(floor)] * 4, floor, cfg, best_epoch=3)
    # best in the last 4 epochs: go on
    assert not _plateau_stop([row(high)] * 3 + [row(floor)] * 4, floor, cfg, best_epoch=5)
    # only 3 epochs at the floor: go on, even with an old best
    assert not _plateau_stop([row(high)] * 4 + [row(floor)] * 3, floor, cfg, best_epoch=1)
    # lr still above the floor after the last step: go on
    assert not _plateau_stop([row(floor)] * 5, high, cfg, best_epoch=1)


def test_summarise_run_selects_on_validation():
    rows = [{"test_acc": t, "val_acc": v} for t, v in [(0.5, 0.4), (0.7, 0.6), (0.8, 0.55), (0.6, 0.6)]]
    s = summarise_run(rows, has_val=True)
    # best val 0.6 first reached at epoch 2 (ties go to the earlier epoch); test there 0.7
    assert (s["best_epoch"], s["best_val_acc"], s["test_acc_at_best_val"]) == (2, 0.6, 0.7)
    assert (s["max_test_acc"], s["epoch_of_max"]) == (0.8, 3)        # the paper's measure
    assert s["epochs_to_99pct_val"] == 2 and s["epochs_trained"] == 4
    s = summarise_run(rows, has_val=False)
    assert s["best_epoch"] == 3 and s["test_acc_at_best_val"] is None


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, one_thread):
    store = RunStore(tmp_path_factory.mktemp("runs"), results=tmp_path_factory.mktemp("results"))
    cfg = make_config("mnist", 0, profile="smoke", epochs=3, **TINY)
    return store, cfg, run(cfg, store, progress=False, log=lambda m: None)


def test_validation_protocol_end_to_end(tiny_base):
    store, cfg, d = tiny_base
    s = json.loads((d / "summary.json").read_text())
    m = pd.read_csv(d / "metrics.csv")
    assert s["val_images"] == 60 and s["train_images"] == 180 and s["test_images"] == 120
    assert m["val_acc"].notna().all() and len(m) == 3 and s["stop_reason"] == "fixed"
    best = int(m["val_acc"].idxmax())
    assert s["test_acc_at_best_val"] == m["test_acc"][best] and s["best_epoch"] == best + 1
    assert 0 < s["majority_frac"] <= 1 and s["cka_block1"] == 1.0
    # exported at once, with the base's weights
    e = store.export_path(cfg)
    assert {p.name for p in e.iterdir()} == {"config.json", "summary.json", "metrics.csv", "block1.npz", "weights.pt"}
    assert np.load(e / "block1.npz")["maps"].shape == (4, 32, 32)   # width 1/16: block 1 has 4 filters


@pytest.mark.parametrize("init,regime", [("mean", "frozen"), ("stn", "frozen"), ("stn", "thawed")])
def test_feature_cache_gives_the_same_numbers(tiny_base, tmp_path, init, regime):
    """Cached FM prefix / STN hint features train exactly as the uncached pass (fp32)."""
    store, cfg, base_dir = tiny_base
    child = make_config("mnist", 3, init, regime, profile="smoke", epochs=2, stn_epochs=2, **TINY)
    outs = []
    for cache in (True, False):
        st = RunStore(tmp_path / f"runs{cache}", results=None)
        # the same trained base in both stores
        shutil.copytree(base_dir, st.path(cfg))
        d = run(child, st, progress=False, log=lambda m: None, cache=cache)
        outs.append((pd.read_csv(d / "metrics.csv"), json.loads((d / "summary.json").read_text())))
    (m1, s1), (m0, s0) = outs
    for col in ("train_loss", "train_acc", "val_loss", "test_loss", "test_acc"):
        np.testing.assert_allclose(m1[col], m0[col], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s1["stn_losses"], s0["stn_losses"], rtol=1e-4)
    if init == "stn":
        assert len(s1["stn_losses"]) == 2


def test_fresh_clone_resumes_from_exported_results(tmp_path):
    """Export, delete the run store, rerun the grid: nothing retrains; a missing child trains from
    the exported base."""
    from triage.executors import run_grid
    from triage.grid import expand_grid
    results = tmp_path / "results"
    ov = {k: v for k, v in TINY.items()}
    cfgs = [c for c in expand_grid("mnist", "smoke", [0], blocks=[2], inits=["random"], regimes=["frozen", "thawed"],
                                   epochs=1, **ov)]
    cfgs.insert(1, make_config("mnist", 0, profile="smoke", control=True, epochs=1, **ov))
    r1 = run_grid(cfgs, RunStore(tmp_path / "a", results=results), notebooks=False, progress=False,
                  log=lambda m: None)
    assert r1.count("done") == 4, r1.results
    shutil.rmtree(tmp_path / "a")                                  # a new machine: runs/ is gone
    gone = RunStore(tmp_path / "b", results=results).export_path(cfgs[-1])
    shutil.rmtree(gone)                                            # one child never got exported
    r2 = run_grid(cfgs, RunStore(tmp_path / "b", results=results), notebooks=False, progress=False,
                  log=lambda m: None)
    status = {r["name"]: r["status"] for r in r2.results}
    assert status == {"base": "reused", "control": "reused", "b2-random-frozen": "reused",
                      "b2-random-thawed": "done"}, r2.results
    assert not (tmp_path / "b" / "smoke" / "mnist" / f"base-{cfgs[0].key()}").exists()   # base not retrained


@pytest.mark.parametrize("init,regime", [("mean", "thawed"), ("stn", "frozen"), ("random", "frozen")])
def test_resnet_children_run(tmp_path, one_thread, init, regime):
    """`triage run --model resnet8 --block 2 ...`: a ResNet stage is triaged like a VGG block."""
    store = RunStore(tmp_path / "runs", results=None)
    cfg = make_config("mnist", 2, init, regime, profile="smoke", model="resnet8", epochs=1, stn_epochs=1,
                      **{k: v for k, v in TINY.items() if k != "width"})
    d = run(cfg, store, progress=False, log=lambda m: None)
    s = json.loads((d / "summary.json").read_text())
    assert cfg.name == f"resnet8-b2-{init}-{regime}" and s["epochs_trained"] == 1
    assert cfg.parent().key() != make_config("mnist", 0, profile="smoke", **TINY).key()
    base = store.path(cfg.parent())
    assert json.loads((base / "config.json").read_text())["config"]["model"] == "resnet8"
    # the VGG default leaves format-1 addresses alone
    assert "model" not in json.dumps(_dc.asdict(make_config("cifar10", 0, profile="cpu"))) or \
        make_config("cifar10", 0, profile="cpu").key() == "1da443184428"
    with pytest.raises(ConfigError, match="1..3 for resnet8"):
        make_config("mnist", 4, "mean", "thawed", profile="smoke", model="resnet8")
    with pytest.raises(ConfigError, match="unknown model"):
        make_config("mnist", 0, profile="smoke", model="vgg11")


# --------------------------------------------------------------------------- one seed, one arithmetic

def _fake_finished(store, cfg, device, autocast):
    """A finished run's two small files, as another machine would have exported them."""
    d = store.export_path(cfg)
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "device": device}))
    (d / "summary.json").write_text(json.dumps({"autocast": autocast, "test_acc_at_best_val": 0.5}))


def test_a_seed_keeps_the_device_and_arithmetic_its_finished_networks_used(tmp_path, one_thread, monkeypatch):
    import triage.experiments as ex
    auto = {**TINY, "precision": "auto"}
    store = RunStore(tmp_path / "runs", results=tmp_path / "results")
    base = make_config("mnist", 0, profile="smoke", epochs=1, **auto)
    kid = lambda b, i, r, seed=0: make_config("mnist", b, i, r, profile="smoke", epochs=1, seed=seed, **auto)  # noqa: E731
    child = kid(3, "mean", "thawed")
    assert ex.seed_settings(base, store) == {} and ex.seed_settings(child, store) == {}
    _fake_finished(store, kid(1, "random", "frozen"), "cpu", "float32")
    _fake_finished(store, kid(2, "stn", "thawed"), "cpu", "float32")
    _fake_finished(store, kid(2, "stn", "thawed", seed=1), "cuda", "bfloat16")   # another seed: not a sibling
    _fake_finished(store, make_config("mnist", 0, profile="smoke", control=True, epochs=1, **auto), "cpu", None)
    assert ex.seed_settings(child, store) == {("cpu", "float32"): 2, ("cpu", None): 1}
    assert ex.seed_settings(base, store) == {}           # the base is no one's sibling

    # a machine whose "auto" is bf16 (native bf16) trains the seed's next child in fp32, as its siblings
    real = ex.autocast_dtype
    monkeypatch.setattr(ex, "autocast_dtype", lambda d, p="auto": torch.bfloat16 if p == "auto" else real(d, p))
    said = []
    d = run(child, store, progress=False, log=said.append)
    assert json.loads((d / "summary.json").read_text())["autocast"] == "float32"
    assert any("its other 3 finished networks trained in float32, so b3-mean-thawed does too" in m for m in said)
    assert ex.seed_settings(kid(4, "mean", "frozen"), store)[("cpu", "float32")] == 3   # run store + export: once

    # siblings in bf16 on a CPU without native bf16 (emulated, ~10x slower): one clear error, nothing trained
    monkeypatch.setattr(ex, "autocast_dtype", lambda d, p="auto": None if p == "auto" else real(d, p))
    store2 = RunStore(tmp_path / "runs2", results=tmp_path / "results2")
    _fake_finished(store2, kid(1, "random", "thawed"), "cpu", "bfloat16")
    with pytest.raises(ConfigError, match=r"mnist seed 0 \(smoke\): its other 1 finished networks trained in "
                                          r"bfloat16, which this cpu only emulates"):
        run(child, store2, progress=False, log=lambda m: None)
    assert not store2.run_path(child).exists() and not store2.run_path(base).exists()

    # siblings on a GPU: a CPU does not continue the seed
    store3 = RunStore(tmp_path / "runs3", results=tmp_path / "results3")
    _fake_finished(store3, kid(5, "stn", "frozen"), "cuda:0", "bfloat16")
    with pytest.raises(ConfigError, match="its other 1 finished networks trained on cuda, b3-mean-thawed would "
                                          "train on cpu.*--device cuda"):
        run(child, store3, progress=False, log=lambda m: None)
    # an explicit precision is part of the config (so of its base): the device is still checked
    fp32 = lambda b, i, r: make_config("mnist", b, i, r, profile="smoke", epochs=1, **TINY)  # noqa: E731
    _fake_finished(store3, fp32(5, "stn", "frozen"), "cuda", "float32")
    with pytest.raises(ConfigError, match="trained on cuda, b3-mean-thawed would train on cpu"):
        run(fp32(3, "mean", "thawed"), store3, progress=False, log=lambda m: None)
