"""Tests of triage.report: tidy tables on hand-made tables, export/load of a fake run store."""
from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from triage import report, tables
from triage.claims import CLAIMS, VERDICTS, check_claims
from triage.vocabulary import is_base
from triage.data import DataError
from triage.experiments import (STORE_FORMAT, RunStore, build_model, make_config)
from triage.grid import expand_grid
from triage.surgery import compress_block
from triage.train import summarise

INITS = ("random", "mean", "stn")
REGIMES = ("frozen", "thawed")
SCHEME = {("random", "frozen"): "FM-RW", ("mean", "frozen"): "FM-MW", ("stn", "frozen"): "FM-STN",
          ("random", "thawed"): "TM-RW", ("mean", "thawed"): "TM-MW", ("stn", "thawed"): "TM-STN"}


# ----------------------------------------------------------------------------- hand-made tables

def make_runs(acc, e99=lambda s, b, i, r: 4, seeds=(0,), base=0.60, dataset="cifar10", drop=()):
    """A runs table of the full grid: ``acc(seed, block, init, regime) -> max test accuracy``.

    ``base``: the base accuracy (a float, or a dict seed -> accuracy); ``drop``: (block, init, regime)
    networks to leave out. Config columns are the cpu profile's.
    """
    base_cfg = dataclasses.asdict(make_config(dataset, profile="cpu"))
    child_cfg = dataclasses.asdict(make_config(dataset, 1, "random", "thawed", profile="cpu"))
    rows = []
    for s in seeds:
        b = base[s] if isinstance(base, dict) else base
        rows.append({**base_cfg, "seed": s, "scheme": "Base", "name": "base", "max_test_acc": b,
                     "epochs_to_99pct": 20, "train_images": 5000, "test_images": 2000})
        for block in range(1, 6):
            for init in INITS:
                for regime in REGIMES:
                    if (block, init, regime) in drop:
                        continue
                    rows.append({**child_cfg, "seed": s, "block": block, "init": init, "regime": regime,
                                 "scheme": SCHEME[init, regime], "name": f"b{block}-{init}-{regime}",
                                 "max_test_acc": acc(s, block, init, regime),
                                 "epochs_to_99pct": e99(s, block, init, regime),
                                 "train_images": 5000, "test_images": 2000})
    return pd.DataFrame(rows)


SEED3 = (0, 1, 2)


def test_tidy_tables_by_hand():
    t = make_runs(lambda s, b, i, r: 0.5 + 0.01 * b + (0.1 if r == "thawed" else 0.0),
                  e99=lambda s, b, i, r: {"random": 5, "mean": 3, "stn": 1}[i], base=0.7)
    g = tables.regime_gaps(t)
    assert len(g) == 15 and np.allclose(g["gap"], 0.1)
    m = tables.margins(t)
    row = m[(m["block"] == 2) & (m["regime"] == "thawed") & (m["init"] == "mean")].iloc[0]
    assert row["delta"] == pytest.approx(0.5 + 0.02 + 0.1 - 0.7)
    c = tables.convergence_diffs(t)
    assert len(c) == 10 and np.allclose(c["diff"], 1 - (5 + 3) / 2)
    # a control listed before its base (as an export from two stores once wrote them) is not the base
    control = t[t["block"] == 0].assign(name="control", control=True, max_test_acc=0.9)
    t2 = pd.concat([control, t.assign(control=False)], ignore_index=True)
    assert list(is_base(t2)) == [False] + [b == 0 for b in t["block"]]
    assert tables.margins(t2).equals(m)


def test_setting_differences_against_the_paper():
    d = tables.setting_differences(make_runs(lambda s, b, i, r: 0.6)).set_index("setting")
    assert d.loc["input resolution (px)", "ours"] == "32" and d.loc["input resolution (px)", "paper"] == "224"
    assert d.loc["training images", "paper"] == "50000"
    assert d.loc["epochs after compression", ["ours", "paper"]].tolist() == ["6", "25"]
    assert "images" not in d.index
    # early-stopped runs: the config's epochs are a cap, and the table says what was trained
    early = make_runs(lambda s, b, i, r: 0.6)
    early["epochs_trained"] = np.where(early["block"] == 0, 31, np.where(early["init"] == "stn", 9, 14))
    early.loc[early["name"] == "b5-mean-thawed", "epochs_trained"] = 6
    early["stn_epochs_trained"] = np.where(early["init"] == "stn", 1, 0)
    early.loc[early["name"] == "b2-stn-frozen", "stn_epochs_trained"] = 2
    e = tables.setting_differences(early).set_index("setting")["ours"]
    assert e["epochs after compression"] == "cap 6; trained 6-14"
    assert e["STN epochs"] == "cap 2; trained 1-2"          # the cpu profile: 2 hint epochs
    assert e["base epochs"].endswith("; trained 31")
    dogs = make_runs(lambda s, b, i, r: 0.1, dataset="stanford_dogs")
    assert tables.setting_differences(dogs).set_index("setting").loc["images", "paper"] == "full photographs"
    assert report.Results("cpu", dogs, pd.DataFrame()).tag == (
        "[profile: cpu; stanford_dogs (64x64 box crops); seed 0]")
    assert tables.setting_caveat(dogs).startswith(
        "ours vs paper: 64x64 crops of the dog boxes vs full photographs; width 0.25 vs 1; 64 vs 224 px")


def test_activation_similarity_by_hand():
    rng = np.random.default_rng(0)
    base = rng.random((2, 4, 4))
    acts = {"labels": np.array(["Base", "Same", "Flipped"]),
            "activations": np.stack([base, 2 * base + 1, -base])}
    sim = tables.activation_similarity(acts).set_index(["model", "filter"])["r"]
    assert sim["Same"].tolist() == pytest.approx([1.0, 1.0])
    assert sim["Flipped"].tolist() == pytest.approx([-1.0, -1.0])


# ----------------------------------------------------------------------------- export / load

def _fake_run(store: RunStore, cfg, test_acc, notebook=True):
    """A finished run folder as triage.run writes it, with untrained weights (no training)."""
    d = store.path(cfg)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({
        "config": dataclasses.asdict(cfg), "key": cfg.key(), "name": cfg.name, "scheme": cfg.scheme,
        "seed": cfg.seed, "store_format": STORE_FORMAT, "git_hash": "abc", "device": "cpu"}))
    rows = [{"epoch": e + 1, "train_loss": 1.0, "train_acc": a, "test_loss": 1.0, "test_acc": a, "lr": 0.1,
             "seconds": 2.0} for e, a in enumerate(test_acc)]
    pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)
    summary = summarise(list(test_acc))
    summary.update({"dataset": cfg.dataset, "block": cfg.block, "init": cfg.init, "regime": cfg.regime,
                    "scheme": cfg.scheme, "profile": cfg.profile, "seed": cfg.seed, "key": cfg.key(),
                    "params": 1, "train_seconds": 2.0 * len(test_acc), "stn_losses": [],
                    "train_images": 2000, "test_images": 500})
    torch.manual_seed(cfg.block * 10 + len(cfg.name))
    model = build_model(cfg)
    if cfg.block:
        model = compress_block(model, cfg.block)
    torch.save(model.state_dict(), d / "weights.pt")
    (d / "summary.json").write_text(json.dumps(summary))
    if notebook:
        (d / "notebook.ipynb").write_text(json.dumps({"metadata": {"papermill": {"duration": 7.5}}}))
    return d


FIG3 = [(0, None, None), (1, "stn", "frozen"), (1, "stn", "thawed"), (1, "random", "thawed")]


@pytest.fixture()
def fake_store(tmp_path):
    """A smoke CIFAR-10 store: the four Fig. 3 networks, one more child, and one run outside the grid."""
    store = RunStore(tmp_path / "runs")
    for block, init, regime in FIG3 + [(3, "mean", "frozen")]:
        cfg = make_config("cifar10", block, init, regime, "smoke")
        n = cfg.epochs
        _fake_run(store, cfg, [0.3 + 0.01 * e for e in range(n)])
    _fake_run(store, make_config("cifar10", 2, "mean", "thawed", "smoke", epochs=3), [0.1, 0.2, 0.3])
    return store


def test_export_writes_the_grid_runs_and_is_idempotent(fake_store, tmp_path):
    out = tmp_path / "results"
    folder = report.export("smoke", fake_store.root, out, fig3=False, log=lambda m: None)
    assert folder == out / "smoke"
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 5                                  # the run with epochs=3 is not in the grid
    assert "run_dir" not in runs.columns and set(runs["notebook_seconds"]) == {7.5}
    metrics = pd.read_csv(folder / "metrics.csv")
    assert len(metrics) == 6 + 4 * 1                      # smoke: base 6 epochs, children 1
    assert list(metrics.columns[:9]) == list(report._KEY_COLUMNS)
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["coverage"] == [{"dataset": "cifar10", "seed": 0, "networks": 5, "of": 31}]
    assert prov["runs_not_in_grid_dropped"] == 1 and prov["fig3"] is None
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    report.export("smoke", fake_store.root, out, fig3=False, log=lambda m: None)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert after == before


def test_export_fig3_activations(fake_store, tmp_path):
    try:
        folder = report.export("smoke", fake_store.root, tmp_path / "results", log=lambda m: None)
    except DataError:
        pytest.skip("CIFAR-10 test images not available")
    if not (folder / "fig3_activations.npz").exists():
        pytest.skip("CIFAR-10 test images not available")
    res = report.load("smoke", tmp_path / "results")
    a = res.activations
    assert a["activations"].shape == (4, 8, 32, 32)        # smoke width 1/8: 8 filters in block 1
    assert a["activations"].dtype == np.float16 and (a["activations"] >= 0).all()   # post-ReLU
    assert [str(x) for x in a["labels"]] == ["Base", "FM-STN", "TM-STN", "TM-RW"]
    keys = [make_config("cifar10", b, i, r, "smoke").key() for b, i, r in FIG3]
    assert [str(k) for k in a["keys"]] == keys
    assert a["dataset"] == "cifar10" and a["image_index"] == 0
    assert not np.allclose(a["activations"][0], a["activations"][3])
    # the same maps as the grid notebooks' Fig. 3 view computes from the weights
    from triage.experiments import load_model
    from triage.plots import block1_activations, fixed_test_image
    x, _ = fixed_test_image("cifar10", 0)
    ref = block1_activations(load_model(fake_store.path(make_config("cifar10", profile="smoke"))), x)[0]
    np.testing.assert_allclose(a["activations"][0].astype(np.float32), ref.numpy(), rtol=1e-2, atol=1e-2)


def test_load_roundtrip_and_coverage(fake_store, tmp_path):
    report.export("smoke", fake_store.root, tmp_path / "results", fig3=False, log=lambda m: None)
    res = report.load("smoke", tmp_path / "results")
    assert res.profile == "smoke" and res.datasets == ["cifar10"] and res.seeds == [0]
    assert res.tag == "[profile: smoke; cifar10; seed 0]"
    assert res.coverage_text() == "cifar10 seed 0: 5 of 31 networks"
    assert not res.complete
    assert res.runs.loc[res.runs["block"] == 0, "init"].iloc[0] is None
    assert "b1-mean-frozen" in res.coverage()["missing"].iloc[0]


def test_export_complete_only_leaves_out_partial_grids(fake_store, tmp_path):
    from triage.grid import expand_grid
    for cfg in expand_grid("mnist", "smoke", seeds=[1]):
        _fake_run(fake_store, cfg, [0.5] * cfg.epochs, notebook=True)
    out = tmp_path / "results"
    report.export("smoke", fake_store.root, out, complete_only=True, fig3=False, log=lambda m: None)
    prov = json.loads((out / "smoke" / "provenance.json").read_text())
    assert prov["coverage"] == [{"dataset": "mnist", "seed": 1, "networks": 31, "of": 31}]
    assert prov["partial_grids_left_out"] == ["cifar10 seed 0"]
    assert report.load("smoke", out).complete
    with pytest.raises(ValueError, match="no finished"):
        report.export("smoke", fake_store.root, out, datasets=["cifar10"], complete_only=True, fig3=False,
                      log=lambda m: None)


def test_stored_summary_says_what_produced_the_numbers(fake_store, tmp_path):
    assert report.stored_summary(tmp_path / "none").empty
    # one run recorded its thread count, the others did not (older runs)
    meta_path = fake_store.path(make_config("cifar10", profile="smoke")) / "config.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "threads": 1}))
    report.export("smoke", fake_store.root, tmp_path / "results", fig3=False, log=lambda m: None)
    prov = json.loads((tmp_path / "results" / "smoke" / "provenance.json").read_text())
    assert prov["runs_threads"] == ["1", "unknown"]
    s = report.stored_summary(tmp_path / "results")
    assert s.to_dict("records")[0] | {"machine": None, "exported": None} == {
        "profile": "smoke", "data sets": "cifar10", "seeds": "0", "networks": "5 of 31",
        "machine": None, "devices": "cpu", "threads": "1, unknown", "git (runs)": "abc",
        "exported": None}


def test_load_without_results(tmp_path):
    with pytest.raises(ValueError, match="no exported cpu results"):
        report.load("cpu", tmp_path)
    with pytest.raises(ValueError, match="unknown profile"):
        report.load("huge", tmp_path)
    assert report.default_profile(tmp_path) == "smoke"


def test_load_only_reads_it_never_trains(tmp_path, monkeypatch):
    from triage import grid
    calls = []
    monkeypatch.setattr(grid, "run_smoke_grid", lambda *a, **kw: calls.append(a))
    monkeypatch.setattr(report, "run_smoke_grid", lambda *a, **kw: calls.append(a))
    with pytest.raises(ValueError, match=r"no exported smoke results.*run_smoke_grid"):
        report.load("smoke", tmp_path / "results")
    assert calls == [] and not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_smoke_grid_then_export_then_load(tmp_path, monkeypatch):
    # the explicit fresh-clone path: train (here: three fake finished runs), export, read
    from triage import grid

    def fake_run(cfg, store, **kw):   # stands in for 31 trainings
        if (cfg.block, cfg.init, cfg.regime) in FIG3[:3]:
            _fake_run(store, cfg, [0.5] * cfg.epochs, notebook=False)
        return store.path(cfg)

    monkeypatch.setattr("triage.experiments.run", fake_run)
    out = grid.run_smoke_grid("mnist", tmp_path / "runs", progress=False)
    assert len(out) == 31
    report.export("smoke", tmp_path / "runs", tmp_path / "results", datasets=["mnist"], fig3=False,
                  log=lambda m: None)
    res = report.load("smoke", tmp_path / "results")
    assert len(res.runs) == 3 and res.datasets == ["mnist"]


def test_export_command(fake_store, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    assert report.add_commands(sub) == ("export",)
    args = parser.parse_args(["export", "--profile", "smoke", "--runs", str(fake_store.root),
                              "--out", str(tmp_path / "res"), "--no-fig3"])
    assert report.main(args) == 0
    assert "cifar10 seed 0: 5/31" in capsys.readouterr().err
    args = parser.parse_args(["export", "--profile", "cpu", "--runs", str(fake_store.root),
                              "--out", str(tmp_path / "res")])
    assert report.main(args) == 2
    assert "no finished cpu-profile run" in capsys.readouterr().err


def test_grid_config_keys_match_the_fake_store(fake_store):
    # guards the fixture: its grid runs are those of `triage grid --profile smoke`
    keys = {c.key() for c in expand_grid("cifar10", "smoke")}
    assert {make_config("cifar10", b, i, r, "smoke").key() for b, i, r in FIG3} <= keys


def test_results_plots_draw_the_tables():
    import matplotlib
    matplotlib.use("Agg")
    from triage import plots
    t = make_runs(lambda s, b, i, r: 0.6 - 0.01 * b, seeds=SEED3)
    fig = plots.plot_max_accuracy(t, "[test]")
    assert len(fig.axes) == 1 and "Fig. 2" in fig._suptitle.get_text()
    # three data sets wrap to two panels a row; the fourth slot is hidden
    t3 = pd.concat([t.assign(dataset=d) for d in ("mnist", "cifar10", "cifar100")], ignore_index=True)
    fig = plots.plot_max_accuracy(t3)
    assert [ax.get_visible() for ax in fig.axes] == [True, True, True, False]
    assert [ax.get_title().split(":")[0] for ax in fig.axes[:3]] == ["mnist", "cifar10", "cifar100"]
    assert fig.axes[2].get_subplotspec().rowspan.start == 1
    fig, axes = plots.panel_grid(1, 5, 3)
    assert len(axes) == 1 and tuple(fig.get_size_inches()) == (5, 3)
    with pytest.raises(ValueError, match="positive integer"):
        plots.panel_grid(0, 5, 3)
    fig = plots.plot_convergence(t, "[test]", by="block")
    assert [ax.get_title()[:2] for ax in fig.axes[:2]] == ["FM", "TM"]
    with pytest.raises(ValueError, match="by must be"):
        plots.plot_convergence(t, by="seed")
    import matplotlib.pyplot as plt
    plt.close("all")


@pytest.mark.slow
def test_smoke_grid_slice_end_to_end(tmp_path):
    """The fresh-clone path on a 3-network slice: real training, export, claims."""
    from triage import grid
    grid.run_smoke_grid("mnist", tmp_path / "runs", blocks=[1], inits=["stn"], regimes=["frozen", "thawed"],
                        progress=False)
    folder = report.export("smoke", tmp_path / "runs", tmp_path / "res", fig3=False, log=lambda m: None)
    res = report.load("smoke", tmp_path / "res")
    assert len(res.runs) == 3 and (res.runs["max_test_acc"] > 0.3).all()   # MNIST after 6 epochs
    assert len(res.metrics) == 6 + 1 + 1
    assert set(check_claims(res.runs).verdicts["verdict"]) <= set(VERDICTS)
    assert folder.is_dir()


def test_export_reads_runs_exported_on_another_machine(tmp_path):
    """Format 2: a results folder alone (the run store gone) exports runs.csv with the new columns,
    the control and the bases' CKA to each other; the stored child-lr pilot reads back."""
    import pandas as pd
    from triage.experiments import RunStore, make_config, run
    tiny = dict(width=1 / 16, train_per_class=24, test_per_class=12, batch_size=32, val_fraction=0.25)
    results = tmp_path / "results"
    for seed in (0, 1):
        store = RunStore(tmp_path / "gone", results=results)
        run(make_config("mnist", 0, profile="smoke", seed=seed, **tiny), store, progress=False, log=lambda m: None)
    run(make_config("mnist", 0, profile="smoke", seed=0, control=True, epochs=1, **tiny), store, progress=False,
        log=lambda m: None)
    import shutil
    # half moved: seed 0's base only exported, the control and seed 1's base still in the run store.
    # The export writes them in one order whichever store each came from.
    shutil.rmtree(store.path(make_config("mnist", 0, profile="smoke", seed=0, **tiny)))
    out = report.export("smoke", runs_root=tmp_path / "gone", out=results, grid_only=False, fig3=False,
                        log=lambda m: None)
    mixed = {f: (out / f).read_bytes() for f in ("runs.csv", "metrics.csv", "cka_bases.csv")}
    shutil.rmtree(tmp_path / "gone")
    out = report.export("smoke", runs_root=tmp_path / "empty", out=results, grid_only=False, fig3=False,
                        log=lambda m: None)
    assert {f: (out / f).read_bytes() for f in mixed} == mixed
    runs = pd.read_csv(out / "runs.csv")
    assert list(zip(runs["seed"], runs["name"])) == [(0, "base"), (0, "control"), (1, "base")]
    assert sorted(runs["name"]) == ["base", "base", "control"]
    for col in ("test_acc_at_best_val", "best_val_acc", "stop_reason", "cka_block1", "majority_frac"):
        assert runs[col].notna().all(), col
    cka = pd.read_csv(out / "cka_bases.csv")
    assert list(cka[["seed_a", "seed_b"]].itertuples(index=False, name=None)) == [(0, 1)]
    assert 0 < cka["cka_block1"].iloc[0] < 1
    assert report.grid_size("smoke") == 31 and report.grid_size("campaign") == 32


def test_stored_child_lr_pilot():
    table, decision = tables.child_lr_pilot()
    if table is None:
        pytest.skip("no campaign pilot stored")
    assert decision["choice"] in ("initial", "continue") and len(table) == 5
    diff = table["initial"].mean() - table["continue"].mean()
    assert (decision["choice"] == "initial") == (diff > decision["margin"])


def test_model_runs_reads_a_resnet_grid_as_a_grid(tmp_path):
    """Beyond the paper: a ResNet-8 grid beside VGG's, names without the model prefix for the plots and
    claims; runs of other models and outside the grid are left out."""
    store = RunStore(tmp_path / "runs", results=None)
    for block, init, regime, ov in [(0, None, None, {}), (2, "mean", "thawed", {}), (3, "stn", "thawed", {}),
                                    (2, "mean", "thawed", {"epochs": 3})]:
        cfg = make_config("cifar10", block, init, regime, "smoke", model="resnet8", **ov)
        _fake_run(store, cfg, [0.3 + 0.01 * e for e in range(cfg.epochs)])
    _fake_run(store, make_config("cifar10", 0, profile="smoke"), [0.5] * 6)          # VGG's base
    _fake_run(store, make_config("cifar10", 0, profile="smoke", model="resnet8", width=1.0), [0.5] * 6)
    runs = report.model_runs("smoke", "resnet8", "cifar10", root=tmp_path / "none", runs_root=store.root)
    assert sorted(runs["name"]) == ["b2-mean-thawed", "b3-stn-thawed", "base"] and set(runs["model"]) == {"resnet8"}
    assert report.model_runs("smoke", "resnet8", root=tmp_path / "none").empty     # nothing exported
    wide = report.model_runs("smoke", "resnet8", "cifar10", root=tmp_path / "none", runs_root=store.root, width=1.0)
    assert list(wide["name"]) == ["base"] and list(wide["width"]) == [1.0]          # the grid of --set width=1.0
    vgg = report.model_runs("smoke", "vgg16_bn", "cifar10", root=tmp_path / "none", runs_root=store.root)
    assert list(vgg["name"]) == ["base"]
    rep = check_claims(runs)
    assert set(rep.verdicts["claim"]) == set(CLAIMS)


def test_grid_cost_by_hand():
    """15 FM + 15 TM + control per grid, medians per data set, device and arithmetic; pilot
    (other child_lr) and failure-path runs left out; CPU time summed where it was recorded."""
    rows = [("cifar10", "cpu", None, 1, "mean", "frozen", "initial", "b1", None, s, None) for s in (100, 200, 300)]
    rows += [("cifar10", "cpu", None, 2, "mean", "thawed", "initial", "b2", None, s, None) for s in (900, 1000)]
    rows += [("cifar10", "cpu", None, 0, None, None, "initial", "control", None, 1800, None),
             ("cifar10", "cpu", None, 2, "mean", "thawed", "continue", "b2", None, 99999, None),  # the pilot's other reading
             ("cifar10", "cpu", None, 1, "mean", "thawed", "initial", "b1+3", (3,), 99999, None),  # a failure-path step
             ("cifar10", "cuda", None, 1, "random", "thawed", "initial", "b1", None, 120, None),
             # another data set on the same device, and another arithmetic: their own rows
             ("stanford_dogs", "cpu", "float32", 1, "mean", "frozen", "initial", "b1", None, 1000, 400),
             ("stanford_dogs", "cpu", "float32", 1, "mean", "frozen", "initial", "b1", None, 3000, None),
             ("stanford_dogs", "cpu", "float32", 1, "mean", "thawed", "initial", "b1", None, 2000, 1000),
             ("stanford_dogs", "cpu", "bfloat16", 1, "mean", "thawed", "initial", "b1", None, 50, None)]
    t = pd.DataFrame([dict(dataset=ds, device=d, autocast=a, block=b, init=i, regime=r, child_lr=c, name=n,
                           extra_blocks=e, train_seconds=s, train_cpu_seconds=cs, profile="campaign")
                      for ds, d, a, b, i, r, c, n, e, s, cs in rows])
    cost = tables.grid_cost(t)
    assert list(cost.index) == [("cifar10", "cpu", "not recorded"), ("cifar10", "cuda", "not recorded"),
                                ("stanford_dogs", "cpu", "bfloat16"), ("stanford_dogs", "cpu", "float32")]
    cpu = cost.loc[("cifar10", "cpu", "not recorded")]
    assert (cpu["n_fm"], cpu["fm_s"], cpu["n_tm"], cpu["tm_s"], cpu["control_s"]) == (3, 200, 2, 950, 1800)
    assert cpu["grid_hours"] == pytest.approx((15 * 200 + 15 * 950 + 1800) / 3600)
    assert cpu["n_cpu_time"] == 0 and cpu["grid_cpu_hours"] != cpu["grid_cpu_hours"]
    # no FM and no control on cuda: FM unknown (NaN hours), the control counted as a TM child
    gpu = cost.loc[("cifar10", "cuda", "not recorded")]
    assert gpu["tm_s"] == 120 and gpu["grid_hours"] != gpu["grid_hours"]
    dogs = cost.loc[("stanford_dogs", "cpu", "float32")]
    assert (dogs["n_fm"], dogs["fm_s"], dogs["n_tm"], dogs["tm_s"]) == (2, 2000, 1, 2000)
    assert dogs["n_cpu_time"] == 2
    # CPU time: FM median 400 (the one FM run that has it), TM 1000, control as a TM child
    assert dogs["grid_cpu_hours"] == pytest.approx((15 * 400 + 15 * 1000 + 1000) / 3600)
    assert tables.grid_cost(pd.DataFrame()).empty


def test_remaining_cost_prices_what_is_left_at_the_finished_networks_medians():
    # cifar100 done: base (cpu, not recorded), control 7000 s, FM 2000 and 6000 (median 4000), TM 5000,
    # all cpu fp32; an audit base, a starting-lr rerun and a GPU child are not the grid's price
    def run(name, regime, secs, device="cpu", autocast="float32", child_lr="initial", stopping="plateau"):
        return dict(dataset="cifar100", name=name, regime=regime, train_seconds=secs, device=device,
                    autocast=autocast, child_lr=child_lr, stopping=stopping, extra_blocks=None, profile="campaign")
    table = pd.DataFrame([run("base", None, 3000, autocast=None), run("control", None, 7000),
                          run("b1-random-frozen", "frozen", 2000), run("b1-mean-frozen", "frozen", 6000),
                          run("b1-random-thawed", "thawed", 5000),
                          run("base", None, 99999, stopping="fixed"),                       # an audit
                          run("b1-mean-frozen", "frozen", 99999, child_lr="continue"),     # the lr test
                          run("b2-mean-thawed", "thawed", 10, device="cuda", autocast="bfloat16")])
    status = pd.DataFrame([dict(dataset="cifar100", name=n, scheme=sc, state=st) for n, sc, st in [
        ("base", "Base", "done"), ("control", "Control", "done"), ("b1-random-frozen", "FM-RW", "done"),
        ("b2-random-frozen", "FM-RW", "missing"), ("b2-random-thawed", "TM-RW", "running"),
        ("b3-stn-thawed", "TM-STN", "partial")]] + [
        dict(dataset="mnist", name="base", scheme="Base", state="done"),
        dict(dataset="stanford_dogs", name="control", scheme="Control", state="missing")])
    cost = tables.remaining_cost(status, table)
    c = cost.loc["cifar100"]
    assert (c["left"], c["counted"], c["basis"]) == (3, 3, "cpu, float32, 4 runs")
    assert c["hours"] == pytest.approx((4000 + 5000 + 5000) / 3600)
    assert "mnist" not in cost.index                        # nothing left
    dogs = cost.loc["stanford_dogs"]                        # nothing finished: left, not priced
    assert (dogs["left"], dogs["counted"], dogs["hours"], dogs["basis"]) == (1, 0, 0, "nothing finished")
    # no TM finished: a TM child costs what the control did, an FM child half of it
    no_tm = table[table["regime"] != "thawed"].iloc[[1]]                  # the control alone
    only = tables.remaining_cost(status[status["dataset"] == "cifar100"], no_tm).loc["cifar100"]
    assert only["hours"] == pytest.approx((3500 + 7000 + 7000) / 3600)


def test_device_repeats_pairs_a_repeat_with_the_grid_run_of_its_key(tmp_path):
    def write(d, device, acc):
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"device": device}))
        (d / "summary.json").write_text(json.dumps({"dataset": "cifar10", "seed": 2, "name": "base", "key": "k1",
                                                    "test_acc_at_best_val": acc}))
    write(tmp_path / "campaign" / "runs" / "cifar10" / "base-k1", "cuda", 0.7917)
    write(tmp_path / "campaign" / "device_repeats" / "cifar10" / "base-k1", "cpu", 0.7809)
    write(tmp_path / "campaign" / "device_repeats" / "cifar10" / "base-k2", "cpu", 0.5)   # no grid run: left out
    t = tables.device_repeats(tmp_path)
    assert len(t) == 1 and t.iloc[0]["grid_device"] == "cuda"
    assert (t.iloc[0]["cpu_acc"], t.iloc[0]["cuda_acc"]) == (0.7809, 0.7917)
    assert t.iloc[0]["diff"] == pytest.approx(-0.0108)                  # CPU minus GPU, whichever the grid kept
    assert tables.device_repeats(tmp_path, profile="cpu").empty
    # the other way round (the grid kept the CPU run, the GPU run is the repeat): the same sign
    write(tmp_path / "p2" / "runs" / "cifar10" / "base-k1", "cpu", 0.7809)
    write(tmp_path / "p2" / "device_repeats" / "cifar10" / "base-k1", "cuda", 0.7917)
    t2 = tables.device_repeats(tmp_path, profile="p2")
    assert t2.iloc[0]["grid_device"] == "cpu" and t2.iloc[0]["diff"] == pytest.approx(-0.0108)


def test_device_mix_counts_networks_per_seed_kind_and_device():
    runs = pd.DataFrame({"dataset": ["cifar10"] * 5, "seed": [0] * 5, "key": list("abcde"),
                         "name": ["base", "control", "b1-x", "b2-x", "b3-x"], "block": [0, 0, 1, 2, 3],
                         "device": ["cuda", "cpu", "cuda", "cpu", None]})
    m = tables.device_mix(runs)
    assert m.loc[("cifar10", 0, "child")].to_dict() == {"?": 1, "cpu": 1, "cuda": 1}
    assert m.loc[("cifar10", 0, "base"), "cuda"] == 1 and m.loc[("cifar10", 0, "control"), "cpu"] == 1
    assert tables.device_mix(pd.DataFrame()).empty


def test_mixed_device_text_names_only_seeds_whose_children_used_two_devices():
    runs = pd.DataFrame({"dataset": ["cifar10"] * 7, "seed": [0, 0, 0, 0, 1, 1, 1], "key": list("abcdefg"),
                         "name": ["base", "b1-x", "b2-x", "b3-x", "base", "b1-x", "b2-x"],
                         "block": [0, 1, 2, 3, 0, 1, 2], "device": ["cuda", "cuda", "cpu", "cpu", "cuda", "cpu", "cpu"]})
    assert tables.mixed_device_text(tables.device_mix(runs)) == "cifar10 seed 0: 1 of 3 on cuda"
    assert tables.mixed_device_text(tables.device_mix(runs[runs.seed == 1])) == "none"
    # seed 1's children on one device but in two arithmetics: mixed too; unrecorded runs keep the device alone
    runs["autocast"] = [None, None, None, None, "bfloat16", "float32", "bfloat16"]
    m = tables.device_mix(runs)
    assert m.loc[("cifar10", 1, "child")].to_dict() == {"cpu": 0, "cpu bf16": 1, "cpu fp32": 1, "cuda": 0, "cuda bf16": 0}
    assert tables.mixed_device_text(tables.device_mix(runs[runs.seed == 1])) == "cifar10 seed 1: 1 of 2 on cpu bf16"


def test_fp32_text_names_seeds_and_layouts():
    runs = pd.DataFrame({"dataset": ["stanford_dogs"] * 5 + ["cifar10"] * 2, "seed": [2] * 5 + [0] * 2,
                         "name": ["base", "control", "b1-x", "b2-x", "b3-x", "base", "b1-x"],
                         "block": [0, 0, 1, 2, 3, 0, 1],
                         "autocast": ["bfloat16", "float32", "float32", "float32", "float32", "float32", "bfloat16"],
                         # before the layout was recorded (NaN), fp32 trained NCHW
                         "channels_last": [True, None, None, True, False, None, True]})
    # the bases are left out (cifar10's fp32 base too); the control counts
    assert tables.fp32_text(runs) == "stanford_dogs seed 2: 4 networks (3 NCHW, 1 channels_last)"
    assert tables.fp32_text(runs.drop(columns="channels_last").iloc[[0, 2]]) == "stanford_dogs seed 2: 1 network (1 NCHW)"
    assert tables.fp32_text(runs[runs.autocast == "bfloat16"]) == "none"
    assert tables.fp32_text(runs.drop(columns="autocast")) == "none"


def test_device_repeats_text_by_hand():
    rep = pd.DataFrame({"dataset": ["cifar10"] * 3, "diff": [-0.01, -0.02, 0.0]})
    # mean -1.00 pt, SD 1.00, SE 1/sqrt(3); t(0.975, 2) = 4.3027 -> half-width 2.484
    assert tables.device_repeats_text(rep) == ("3 network(s) trained on both devices (cifar10): CPU minus GPU "
                                               "-1.00 points on average, from -2.00 to +0.00 (95% CI -3.48 to +1.48)")
    assert tables.device_repeats_text(rep.iloc[:2]).endswith("(too few pairs for an interval)")
    assert tables.device_repeats_text(pd.DataFrame()) == "no network is stored on both devices"

