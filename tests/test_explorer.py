"""Tests of triage.explorer: its lookups and figures on the stored cpu results, its widgets in
Python, its notebook cell under nbclient, and the app served by Voilà in a real browser."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triage import explorer, explorer_views, report

REPO = Path(__file__).resolve().parents[1]
CPU = REPO / "results" / "triage" / "cpu"
pytestmark = pytest.mark.skipif(not (CPU / "runs.csv").is_file(), reason="no stored cpu results")


@pytest.fixture(scope="module", autouse=True)
def _agg_and_no_run_store(tmp_path_factory):
    """Headless figures, and an empty run store: no weights, so every view reads stored results."""
    import matplotlib
    matplotlib.use("Agg")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRIAGE_RUNS", str(tmp_path_factory.mktemp("runs")))
    for var in ("VOILA_KERNEL_ID", "VOILA_BASE_URL", "JPY_SESSION_NAME"):
        mp.delenv(var, raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def res():
    return report.load("cpu")


def _results(res, runs, metrics=None, path=None, activations=None):
    """A Results like ``res`` with other tables (a partial grid, results format 2)."""
    return report.Results("cpu", runs.reset_index(drop=True),
                          res.metrics if metrics is None else metrics, activations, {}, path)


def _format2(res, tmp_path):
    """cifar10 seed 0 as results format 2: validation columns, a control, an exported block1.npz."""
    runs = res.runs[(res.runs["dataset"] == "cifar10") & (res.runs["seed"] == 0)].copy()
    runs["test_acc_at_best_val"] = runs["max_test_acc"] - 0.01
    runs["stop_reason"] = "converged"
    ctrl = runs[runs["block"] == 0].assign(name="control", scheme="Control", key="c0ffee000000",
                                           test_acc_at_best_val=0.61, stop_reason="cap")
    runs = pd.concat([runs, ctrl], ignore_index=True)
    m = res.metrics[res.metrics["key"].isin(runs["key"])].copy()
    m["val_acc"], m["val_loss"] = m["test_acc"] + 0.02, m["test_loss"]
    base_m = m[m["name"] == "base"].head(6).assign(name="control", key="c0ffee000000")
    m = pd.concat([m, base_m], ignore_index=True)
    row = runs[runs["name"] == "b3-mean-frozen"].iloc[0]
    d = tmp_path / "runs" / "cifar10" / f"{row['name']}-{row['key']}"
    d.mkdir(parents=True)
    np.savez_compressed(d / "block1.npz", maps=np.full((10, 32, 32), 0.5, np.float16))
    return report.Results("cpu", runs, m, None, {}, tmp_path)


# ----------------------------------------------------------------------------- lookups

def test_find_network_returns_the_row_or_says_what_is_missing(res):
    row = explorer_views.find_network(res, "cifar10", 3, "stn", "thawed", 1)
    assert (row["name"], row["seed"], row["scheme"]) == ("b3-stn-thawed", 1, "TM-STN")
    assert explorer_views.find_network(res, "mnist", 0)["name"] == "base"
    assert explorer_views.network_label(row) == "cifar10 b3 TM-STN, seed 1"
    with pytest.raises(LookupError, match="seed 7"):
        explorer_views.find_network(res, "cifar10", 0, seed=7)
    partial = _results(res, res.runs[(res.runs["dataset"] != "stanford_dogs") & (res.runs["name"] != "b5-mean-frozen")])
    with pytest.raises(LookupError, match="No stanford_dogs results"):
        explorer_views.find_network(partial, "stanford_dogs", 1, "stn", "thawed")
    with pytest.raises(LookupError, match="b5 FM-MW .* not in the cpu results"):
        explorer_views.find_network(partial, "cifar10", 5, "mean", "frozen")
    with pytest.raises(LookupError, match="control"):
        explorer_views.find_network(res, "cifar10", "control")


def test_headline_is_the_format_2_column_when_present(res, tmp_path):
    assert explorer_views.headline(res.runs) == "max_test_acc"
    assert explorer_views.headline(_format2(res, tmp_path).runs) == "test_acc_at_best_val"


def test_network_summary_lists_the_stored_facts(res, tmp_path):
    f2 = _format2(res, tmp_path)
    f2.runs["dead_block1"] = np.where(f2.runs["name"] == "b1-mean-frozen", 5, 0)
    row = explorer_views.find_network(f2, "cifar10", 1, "mean", "frozen", 0)
    out = explorer_views.network_summary(f2, row)
    assert out["network"].startswith("cifar10 b1 FM-MW, seed 0 (FM-MW, key ")
    assert out["dead block-1 channels"] == "5" and out["stopped"] == "converged"
    base = f2.runs[(f2.runs["name"] == "base")].iloc[0]
    assert out["vs its base"] == f"{100 * (row['test_acc_at_best_val'] - base['test_acc_at_best_val']):+.2f} points"
    assert "vs its base" not in explorer_views.network_summary(f2, base)
    assert not any(k.startswith("dead channels of the compressed") for k in out)   # not recorded here
    f2.runs["dead_compressed"] = np.where(f2.runs["block"] == 3, 6.0, np.nan)
    f2.runs["compressed_channels"] = np.where(f2.runs["block"] == 3, 32.0, np.nan)
    b3 = explorer_views.find_network(f2, "cifar10", 3, "random", "frozen", 0)
    assert explorer_views.network_summary(f2, b3)["dead channels of the compressed block 3"] == "6 of 32"
    assert "arithmetic" not in out                                             # not recorded here
    f2.runs["device"], f2.runs["autocast"], f2.runs["hardware"] = "cpu", "float32", "AMD EPYC (family 25 model 1), AVX2"
    b3 = explorer_views.find_network(f2, "cifar10", 3, "random", "frozen", 0)
    out = explorer_views.network_summary(f2, b3)
    assert (out["device"], out["arithmetic"], out["hardware"]) == ("cpu", "float32", "AMD EPYC (family 25 model 1), AVX2")


def test_config_of_a_stored_row_has_its_key(res):
    row = explorer_views.find_network(res, "cifar100", 2, "random", "frozen", 2)
    assert explorer_views._config(row).key() == row["key"]


def test_block1_maps_read_from_exports_or_say_why_not(res, tmp_path):
    fig3 = explorer_views.find_network(res, "cifar10", 1, "stn", "frozen", 0)   # one of Fig. 3's four
    maps, src = explorer_views.block1_maps(res, fig3)
    assert maps.shape == (10, 32, 32) and maps.dtype == np.float32 and "Fig. 3" in src
    other = explorer_views.find_network(res, "cifar10", 4, "mean", "thawed", 0)
    maps, why = explorer_views.block1_maps(res, other)
    assert maps is None and "not stored" in why
    f2 = _format2(res, tmp_path)
    maps, src = explorer_views.block1_maps(f2, explorer_views.find_network(f2, "cifar10", 3, "mean", "frozen", 0))
    assert src == "exported block1.npz" and np.allclose(maps, 0.5)


def test_stored_analysis_reads_the_stored_folders(res):
    base = explorer_views.find_network(res, "cifar10", 0)
    crit = explorer_views.stored_analysis("critical", res, base)
    assert list(crit["maps"].classes)[:2] == ["airplane", "automobile"]
    assert {"table", "sweep", "meta"} <= set(crit)
    aut = explorer_views.stored_analysis("autopsy", res, base)
    assert {"stats_layer", "hist_kind", "pca", "sparsity"} <= set(aut)
    assert explorer_views.stored_analysis("autopsy", res, explorer_views.find_network(res, "cifar10", 1, "stn", "thawed")) is None
    with pytest.raises(ValueError, match="kind"):
        explorer_views.stored_analysis("noise", res, base)


# ----------------------------------------------------------------------------- figures

def test_curves_show_validation_and_the_control_where_stored(res, tmp_path):
    import matplotlib.pyplot as plt
    f2 = _format2(res, tmp_path)
    fig = explorer_views.curves_figure(f2, explorer_views.find_network(f2, "cifar10", 2, "stn", "thawed", 0))
    labels = [l.get_label() for l in fig.axes[0].lines]
    assert {"train", "val", "test", "control (test)"} <= set(labels)
    assert any(l.startswith("base (test acc at best val") for l in labels)
    fig1 = explorer_views.curves_figure(res, explorer_views.find_network(res, "cifar10", 2, "stn", "thawed", 0))
    labels1 = [l.get_label() for l in fig1.axes[0].lines]
    assert "val" not in labels1 and "test, other seeds" in labels1   # format 1: no validation split
    plt.close("all")


def test_fig2_circles_the_network_and_reuses_its_figure(res, tmp_path):
    import matplotlib.pyplot as plt
    f2 = _format2(res, tmp_path)
    row = explorer_views.find_network(f2, "cifar10", 2, "stn", "thawed", 0)
    fig = explorer_views.fig2_figure(f2, row)
    ax = fig.axes[0]
    marks = [l for l in ax.lines if l.get_gid() == "triage-mark"]
    assert len(marks) == 1 and marks[0].get_ydata()[0] == pytest.approx(row["test_acc_at_best_val"])
    # TM-STN is the last of six schemes at block 2: x = 1 - 0.4 + 0.8 * 5.5 / 6
    assert marks[0].get_xdata()[0] == pytest.approx(1 - 0.4 + 0.8 * 5.5 / 6)
    assert "control" in [l.get_label() for l in ax.lines]
    again = explorer_views.fig2_figure(f2, explorer_views.find_network(f2, "cifar10", 0), fig)
    assert again is fig and len([l for l in ax.lines if l.get_gid() == "triage-mark"]) == 1
    plt.close("all")


def test_activations_beside_the_base(res):
    import matplotlib.pyplot as plt
    fig, note = explorer_views.activations_figure(res, explorer_views.find_network(res, "cifar10", 1, "random", "thawed", 0))
    assert len(fig.axes) == 2 * 11 and "base: exported" in note
    fig, why = explorer_views.activations_figure(res, explorer_views.find_network(res, "mnist", 2, "mean", "thawed", 1))
    assert fig is None and "not stored" in why
    plt.close("all")


# ----------------------------------------------------------------------------- widgets

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("results") / "triage"
    _partial_cpu_results(root / "cpu")
    return explorer.Explorer(profile="cpu", results_root=root)


def _all(widget):
    yield widget
    for c in getattr(widget, "children", ()):
        yield from _all(c)


def test_explorer_redraws_compares_and_reports_bad_input(app):
    import ipywidgets as w
    import matplotlib.pyplot as plt
    assert sum(isinstance(x, w.Dropdown) for x in _all(app.widget)) >= 4
    a, b = app.a, app.b
    assert a.row["name"] == "b1-stn-thawed" and a.status.value == ""
    before = a.curves.image.value
    a.block.value = 3
    assert a.row["name"] == "b3-stn-thawed" and a.curves.image.value not in (b"", before)
    app.compare.value = True
    assert b.widget.layout.display == "" and b.row["name"] == "b1-random-thawed"
    assert b.curves.image.value and b.curves.image.value != a.curves.image.value
    a.dataset.value = "mnist"
    a.seed.value = 2
    assert a.row["dataset"] == "mnist" and a.status.value == ""
    assert plt.get_fignums() == []                      # every figure closed after drawing
    assert dict((v, k) for k, v in a.dataset.options)["stanford_dogs"] == "stanford_dogs (no results)"
    a.dataset.value = "stanford_dogs"                   # a data set without results
    assert a.row is None and "No stanford_dogs results" in a.status.value and "triage-warn" in a.status.value
    assert a.curves.image.value == b"" and a.curves.image.layout.display == "none"
    assert "Choose a stored network" in app.critical.header.value
    with app.quiet():                                   # a network that is not stored
        a.dataset.value, a.seed.value, a.block.value, a.init.value, a.regime.value = "cifar10", 1, 5, "mean", "frozen"
    a.refresh()
    assert a.row is None and "b5 FM-MW (seed 1) is not in the cpu results" in a.status.value
    a.block.value = 1                                   # and back: the message goes
    assert a.row is not None and a.status.value == ""


def test_explorer_tabs_read_the_stored_analyses(app):
    a = app.a
    with app.quiet():
        a.dataset.value, a.block.value, a.seed.value = "cifar10", 0, 0
    a.refresh()
    crit, aut = app.critical, app.autopsy
    assert "read from" in crit.header.value and crit.figs[0].image.value
    crit.choice.value = "cat"                            # stored AM images (the book's cat/dog run)
    assert "'cat'" in crit.text.value and crit.figs[1].image.value and "triage-error" not in crit.text.value
    first = aut.figs[0].image.value
    aut.choice.value = "classifier.0"
    assert aut.figs[0].image.value not in (b"", first) and "fc" in aut.text.value
    with app.quiet():
        a.block.value, a.init.value, a.regime.value = 4, "stn", "thawed"
    a.refresh()
    assert "No critical paths of cifar10 b4 TM-STN, seed 0 are stored" in crit.header.value
    assert "stored for: cifar10 base, seed 0" in crit.header.value
    assert crit.button.layout.display == "none"           # no weights here: nothing to compute


def test_missing_analysis_is_computed_from_weights_on_request(app, tmp_path, monkeypatch):
    import dataclasses
    import json
    from triage import studies
    from triage.store import ResultStore
    row = explorer_views.find_network(app.results, "cifar10", 4, "stn", "thawed", 0)
    run_dir = tmp_path / "runs" / "cpu" / "cifar10" / f"{row['name']}-{row['key']}"
    run_dir.mkdir(parents=True)   # a finished run as the store sees it (the fake analysis never loads it)
    (run_dir / "weights.pt").write_bytes(b"")
    (run_dir / "summary.json").write_text("{}")
    (run_dir / "config.json").write_text(json.dumps({"config": dataclasses.asdict(explorer_views._config(row))}))
    stored = ResultStore(REPO / "results" / "autopsy").entries(("cpu", "cifar10", "base-1da443184428"))[0].path
    calls = []

    def autopsy_run(cfg, *, store, results_dir, progress):
        calls.append((cfg.key(), store.is_done(cfg), progress))
        shutil.copytree(stored, Path(results_dir) / cfg.profile / cfg.dataset / f"{cfg.name}-{cfg.key()}" / stored.name)
    monkeypatch.setattr(studies, "autopsy_run", autopsy_run)
    monkeypatch.setattr(app, "runs_root", tmp_path / "runs")
    monkeypatch.setattr(app, "analyses_root", tmp_path / "results")
    a, aut = app.a, app.autopsy
    with app.quiet():
        a.dataset.value, a.seed.value, a.block.value, a.init.value, a.regime.value = "cifar10", 0, 4, "stn", "thawed"
    a.refresh()
    assert aut.button.layout.display == "" and "Its weights are here" in aut.header.value
    aut.button.click()
    assert calls == [(row["key"], True, True)]
    assert "read from" in aut.header.value and aut.figs[0].image.value and aut.bar.layout.display == "none"


def test_explorer_without_results_says_so(tmp_path):
    app = explorer.Explorer(results_root=tmp_path)
    assert "No stored results" in app.header.value and app.tabs.layout.display == "none"
    _partial_cpu_results(tmp_path / "triage" / "cpu")
    app = explorer.Explorer(profile="smoke", results_root=tmp_path / "triage")   # no fallback training
    assert "no exported smoke results" in app.header.value and app.profile.value is None


def test_app_is_a_note_where_no_frontend_runs_widgets():
    note = explorer.app("cpu")
    assert "voila book/explorer.ipynb" in note.data


def test_explore_command_is_registered():
    from triage.__main__ import main
    with pytest.raises(SystemExit) as e:
        main(["explore", "--help"])
    assert e.value.code == 0


@pytest.mark.notebook
def test_app_cell_executes_under_nbclient():
    """The book's notebook client runs the explorer cell to the end (the old explorer's
    ``interactive_output`` cell was reported to hang there: jupyter/nbclient#312)."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from triage import explorer\napp = explorer.app('cpu', live=True)\napp.a.block.value = 2\napp")])
    NotebookClient(nb, timeout=240, kernel_name="python3").execute()
    data = nb.cells[0].outputs[-1]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data
    assert nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


# ----------------------------------------------------------------------------- in a browser

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _partial_cpu_results(dest: Path) -> None:
    """The stored cpu results less Stanford Dogs and one network: bad input to choose in the page."""
    dest.mkdir(parents=True)
    runs = pd.read_csv(CPU / "runs.csv")
    drop = (runs["dataset"] == "stanford_dogs") | ((runs["dataset"] == "cifar10") & (runs["seed"] == 1)
                                                   & (runs["name"] == "b5-mean-frozen"))
    runs[~drop].to_csv(dest / "runs.csv", index=False)
    m = pd.read_csv(CPU / "metrics.csv")
    m[m["key"].isin(runs.loc[~drop, "key"])].to_csv(dest / "metrics.csv", index=False)
    shutil.copy(CPU / "fig3_activations.npz", dest)
    shutil.copy(CPU / "provenance.json", dest)


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory):
    """``voila book/explorer.ipynb`` on 127.0.0.1 (a free port) over the stored cpu results."""
    pytest.importorskip("voila", reason="Voilà is not installed: pip install -e '.[book]'")
    import nbformat
    tmp = tmp_path_factory.mktemp("voila")
    _partial_cpu_results(tmp / "results" / "triage" / "cpu")
    nb = nbformat.read(REPO / "book" / "explorer.ipynb", 4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += f"\nprofile = 'cpu'\nresults_root = {str(tmp / 'results' / 'triage')!r}"
    nbformat.write(nb, tmp / "explorer.ipynb")
    port = _free_port()
    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"), "TRIAGE_RUNS": str(tmp / "runs")}
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(tmp / "explorer.ipynb"), "--no-browser",
                             f"--port={port}", "--Voila.ip=127.0.0.1", "--show_tracebacks=True"],
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "voila.log", "wb"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Voilà did not start: {(tmp / 'voila.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


_IMAGE_BYTES = """async (sel) => {
    const img = document.querySelector(sel);
    if (!img || !img.src || img.offsetParent === null) return null;
    const buf = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let s = ""; for (const b of buf) s += String.fromCharCode(b);
    return btoa(s);
}"""


def test_explorer_in_chromium_through_voila(voila_url, tmp_path):
    """Drop-downs change the figures, a second network draws a different figure, bad input is a
    message, and the page logs no JavaScript error and shows no traceback."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no Chromium to drive: apt-get install -y chromium (Debian), as .ci/run does")
    errors, t0 = [], time.monotonic()

    def digest(page, sel):
        data = page.evaluate(_IMAGE_BYTES, sel)
        return hashlib.sha256(base64.b64decode(data)).hexdigest() if data else None

    def wait_for(page, what, cond, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = cond()
            if value:
                return value
            page.wait_for_timeout(250)
        page.screenshot(path=str(tmp_path / "explorer-timeout.png"), full_page=True)
        pytest.fail(f"timed out waiting for {what}; JS errors: {errors}")

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            # the lab template links a CDN font sheet: offline, answer it empty instead of failing
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(voila_url)
                       else r.fulfill(status=200, body="", content_type="text/css"))
            page.goto(voila_url, timeout=180_000)
            first = wait_for(page, "the first figure", lambda: digest(page, "img.triage-a-curves"), 180)
            assert page.locator(".widget-dropdown select").count() >= 4

            page.select_option(".triage-a-block select", label="block 3")
            wait_for(page, "the curves of block 3", lambda: digest(page, "img.triage-a-curves") not in (None, first))

            page.locator(".triage-compare input").check()
            b_first = wait_for(page, "the second network", lambda: digest(page, "img.triage-b-curves"))
            page.select_option(".triage-b-init select", label="MW")
            b = wait_for(page, "the second network's new curves",
                         lambda: (d := digest(page, "img.triage-b-curves")) not in (None, b_first) and d)
            assert b != digest(page, "img.triage-a-curves")
            assert digest(page, "img.triage-b-fig2") != digest(page, "img.triage-a-fig2")
            page.screenshot(path=str(tmp_path / "explorer-compare.png"), full_page=True)

            page.select_option(".triage-a-dataset select", label="stanford_dogs (no results)")
            # the message and the cleared figure are separate widget updates: wait for both, so that
            # a stale figure beside the message still fails (after the timeout) without racing the page
            wait_for(page, "the no-results message without a stale figure beside it",
                     lambda: "No stanford_dogs results" in page.inner_text("body")
                     and digest(page, "img.triage-a-curves") is None)
            page.select_option(".triage-b-seed select", label="1")
            page.select_option(".triage-b-block select", label="block 5")
            page.select_option(".triage-b-regime select", label="FM")
            wait_for(page, "the not-stored message", lambda: "b5 FM-MW (seed 1) is not in" in page.inner_text("body"))

            text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)

            page.select_option(".triage-a-dataset select", label="cifar10")   # a network with stored analyses
            page.select_option(".triage-a-block select", label="base")
            page.locator(".lm-TabBar-tab", has_text="Critical paths").click()
            wait_for(page, "the critical-paths figure", lambda: digest(page, "img.triage-critical-fig0"))
            page.screenshot(path=str(tmp_path / "explorer-critical.png"), full_page=True)
            text += page.inner_text("body")
        finally:
            browser.close()
    assert "Traceback" not in text and "There was an error when executing cell" not in text
    assert errors == [], errors
    assert (tmp_path / "explorer.png").stat().st_size > 10_000
    print(f"browser test: {time.monotonic() - t0:.1f} s; screenshot {tmp_path / 'explorer.png'}")
