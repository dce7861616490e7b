"""Configs, the run store, resume, and real-data smoke runs (MNIST from ../shared/data)."""
import dataclasses
import json
import subprocess
import sys

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
    assert list(metrics.columns) == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]
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
    monkeypatch.setattr(ex, "train_one_epoch", real)
    logs = []
    run(cfg, store, progress=False, log=logs.append)
    assert any("resuming after epoch 1" in m for m in logs)
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
