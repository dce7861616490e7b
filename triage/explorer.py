"""The interactive explorer: any stored network of the triage grid, in ipywidgets.

Reason to change: the app itself (its widgets, layout, callbacks and the ``triage explore``
command). What it shows of a network (lookup, stored data, figures) is
:mod:`triage.explorer_views`, usable without widgets.

Pick a data set, block, initialiser, regime and seed and see that network's learning
curves (train, validation and test, where stored) against its base and the
continued-base control, its place in the paper's Fig. 2, and its block-1 activations
beside the base's; tick "compare" for a second network side by side. Two tabs show the
critical paths (class -> top filters, their activation-maximisation images, the
distilled network's TP/FP) and the autopsy (layer -> weight histogram, PCA curve,
sparsity) of the selected network.

Everything is read from stored results (``triage.report.load``, ``results/critical``,
``results/autopsy``). Nothing is ever trained: an analysis that is not stored is
computed only when the network's weights are there (the run store, or a base exported
with results format 2), on request and with a progress bar. Bad input (a network that
is not stored, a data set without results) is a message in the page.

Figures are PNG ``ipywidgets.Image``s redrawn by ``observe`` callbacks. The earlier
explorer used ``interactive_output`` with ``plt.show()`` into an ``Output`` widget, the
pattern of the nbclient hang reports (jupyter/nbclient#312, jupyter/nbconvert#2029);
this one needs no ``Output`` capture and no inline backend.

Served as an app without code cells: ``voila book/explorer.ipynb`` (or ``triage explore``).

Example:
    >>> from triage import explorer
    >>> app = explorer.Explorer(profile="cpu")       # doctest: +SKIP
    >>> app                                           # doctest: +SKIP  (displays the widget)
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from .explorer_views import (_analyses_root, _closing_figures, _config, _fmt, _is_control, _png, _stored_runs,
                             _weights_dir, activations_figure, am_of, autopsy_figure, autopsy_summary,
                             critical_figure, curves_figure, fig2_figure, find_network, network_label,
                             network_summary, stored_analysis)
from .vocabulary import INIT_LABELS, REGIME_LABELS

__all__ = ["Explorer", "app", "explorer", "default_profile", "in_voila", "is_live", "add_commands", "main"]

TOP_K = 3                 # the critical-paths chapter's Fig. 2: top three filters per class
_INITS = tuple((label, name) for name, label in INIT_LABELS.items())       # drop-down options
_REGIMES = tuple((label, name) for name, label in REGIME_LABELS.items())


def default_profile(results_root=None) -> str:
    """The explorer's profile: ``campaign`` when stored (the converged results), else ``cpu``, else
    the first stored one; ``smoke`` when none is (``report.load`` then trains its small grid)."""
    from .report import stored_profiles
    stored = stored_profiles(results_root)
    return next((p for p in ("campaign", "cpu") if p in stored), stored[0] if stored else "smoke")


def in_voila() -> bool:
    """True inside a kernel started by Voilà (it sets ``VOILA_BASE_URL`` and ``VOILA_KERNEL_ID``)."""
    return "VOILA_KERNEL_ID" in os.environ or "VOILA_BASE_URL" in os.environ


def is_live() -> bool:
    """True where a frontend runs the widgets: Voilà, or a Jupyter server (JupyterLab, Notebook: it
    sets ``JPY_SESSION_NAME``); False under a bare notebook client (the book build, papermill)."""
    return in_voila() or "JPY_SESSION_NAME" in os.environ


_HOW_TO_OPEN = ("The live explorer appears here when this notebook runs in Voilà (`voila book/explorer.ipynb` "
                "or `triage explore`, then http://localhost:8866) or in JupyterLab; elsewhere call "
                "`triage.explorer.Explorer()` in a notebook cell.")


# ----------------------------------------------------------------------------- widgets

def _msg(text: str, level: str = "info") -> str:
    import html
    colour = {"info": "#555", "warn": "#a15c00", "error": "#b00020"}[level]
    return f'<div class="triage-msg triage-{level}" style="color:{colour}">{html.escape(text)}</div>'


def _table(d: dict) -> str:
    import html
    cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
                    f"<td>{html.escape(str(v))}</td></tr>" for k, v in d.items())
    return f"<table class='triage-summary'>{cells}</table>"


class _Figure:
    """An Image widget showing one matplotlib figure, hidden while empty."""

    def __init__(self, cls: str):
        import ipywidgets as w
        self.image = w.Image(format="png", layout=w.Layout(width="100%", height="auto", display="none"))
        self.image.add_class(cls)

    def show(self, make):
        """Draw ``make()`` (a Figure, or None for nothing) into the image."""
        with _closing_figures():
            fig = make()
            self.image.value = _png(fig) if fig is not None else b""
        self.image.layout.display = "" if self.image.value else "none"

    def clear(self):
        self.show(lambda: None)


class _NetworkPanel:
    """One network's drop-downs and views; ``prefix`` names its CSS classes (``triage-a-block``...)."""

    def __init__(self, app: "Explorer", prefix: str, block=1, init="stn", regime="thawed"):
        import ipywidgets as w
        self.app, self.prefix = app, prefix
        lay = w.Layout(width="190px")
        style = {"description_width": "55px"}
        self.dataset = w.Dropdown(description="data set", layout=w.Layout(width="260px"), style=style)
        self.block = w.Dropdown(description="block", layout=lay, style=style)
        self.init = w.Dropdown(options=_INITS, value=init, description="init", layout=lay, style=style)
        self.regime = w.Dropdown(options=_REGIMES, value=regime, description="regime", layout=lay, style=style)
        self.seed = w.Dropdown(description="seed", layout=lay, style=style)
        self._block0 = block
        for name in ("dataset", "block", "init", "regime", "seed"):
            getattr(self, name).add_class(f"triage-{prefix}-{name}")
            getattr(self, name).observe(lambda _: self.refresh(), "value")
        self.status = w.HTML()
        self.summary = w.HTML()
        self.curves, self.fig2, self.acts = (_Figure(f"triage-{prefix}-{v}") for v in ("curves", "fig2", "acts"))
        self.acts_note = w.HTML()
        self.widget = w.VBox([w.HBox([self.dataset, self.block, self.seed], layout=w.Layout(flex_flow="row wrap")),
                              w.HBox([self.init, self.regime], layout=w.Layout(flex_flow="row wrap")),
                              self.status, self.summary, self.curves.image, self.fig2.image, self.acts.image,
                              self.acts_note], layout=w.Layout(width="100%", min_width="0"))
        self.widget.add_class(f"triage-panel-{prefix}")
        self.row = None

    def set_options(self, results, dataset=None):
        """New results: fill the drop-downs (data sets without results are listed, marked)."""
        from .data import DATASETS
        with self.app.quiet():
            present = set(results.datasets)
            self.dataset.options = [(d if d in present else f"{d} (no results)", d) for d in DATASETS]
            self.dataset.value = dataset or ("cifar10" if "cifar10" in present else results.datasets[0])
            blocks = [("base", 0)] + [(f"block {b}", b) for b in range(1, 6)]
            if _is_control(results.runs).any():
                blocks.append(("control (base trained on)", "control"))
            old = self.block.value if self.block.options else self._block0
            self.block.options = blocks
            self.block.value = old if old in [v for _, v in blocks] else self._block0
            old = self.seed.value
            self.seed.options = results.seeds
            self.seed.value = old if old in results.seeds else results.seeds[0]

    def refresh(self):
        if self.app.muted:
            return
        child = self.block.value not in (0, "control")
        self.init.disabled = self.regime.disabled = not child
        res = self.app.results
        try:
            self.row = find_network(res, self.dataset.value, self.block.value, self.init.value,
                                    self.regime.value, self.seed.value)
        except LookupError as e:
            self.row = None
            # figures go first: the message is what a reader (or a browser test) waits for, and
            # widget updates reach the page in the order they are made
            for f in (self.curves, self.fig2, self.acts):
                f.clear()
            self.summary.value = self.acts_note.value = ""
            self.status.value = _msg(str(e), "warn")
            self.app.network_changed(self)
            return
        try:
            self.status.value = ""
            self.summary.value = _table(network_summary(res, self.row))
            self.curves.show(lambda: curves_figure(res, self.row))
            self.fig2.show(lambda: self.app.fig2(self.row))
            note = ""

            def acts():
                nonlocal note
                fig, note = activations_figure(res, self.row, self.app.runs_root, self.app.data_root)
                return fig
            self.acts.show(acts)
            self.acts_note.value = _msg("Block-1 maps: " + note, "info" if self.acts.image.value else "warn")
        except Exception as e:  # noqa: BLE001  (a view shows what failed; it never raises into the page)
            self.status.value = _msg(f"Could not draw {network_label(self.row)}: {type(e).__name__}: {e}", "error")
        self.app.network_changed(self)



class _AnalysisTab:
    """A tab on the stored ``kind`` results of the network of panel A, with a compute button."""

    def __init__(self, app: "Explorer", kind: str, choice: str):
        import ipywidgets as w
        self.app, self.kind = app, kind
        self.header = w.HTML()
        self.choice = w.Dropdown(description=choice, layout=w.Layout(width="320px"))
        self.choice.add_class(f"triage-{kind}-{choice}")
        self.choice.observe(lambda _: self.draw(), "value")
        self.button = w.Button(description="compute from the weights", icon="play",
                               layout=w.Layout(display="none", width="auto"))
        self.button.on_click(lambda _: self.compute())
        self.bar = w.IntProgress(min=0, max=1, description="computing", layout=w.Layout(display="none"))
        self.log = w.Output()
        self.text = w.HTML()
        self.figs = [_Figure(f"triage-{kind}-fig{i}") for i in range(2)]
        self.widget = w.VBox([self.header, self.button, self.bar, self.log, self.choice, self.text]
                             + [f.image for f in self.figs])
        self.data, self.row = None, None

    def load(self, row):
        """Show the stored results of ``row`` (None: no network selected)."""
        self.row, self.data = row, None
        self.button.layout.display = "none"
        if row is None:
            self._empty("Choose a stored network in the Networks tab.")
            return
        res = self.app.results
        self.data = stored_analysis(self.kind, res, row, self.app.analyses_root)
        what = "Critical paths" if self.kind == "critical" else "Autopsy"
        if self.data is None:
            others = _stored_runs(self.kind, res, row["dataset"], self.app.analyses_root)
            text = (f"No {what.lower()} of {network_label(row)} {'are' if self.kind == 'critical' else 'is'} stored"
                    + (f" (stored for: {'; '.join(others)})." if others else "."))
            if self._can_compute():
                self.button.layout.display = ""
                text += " Its weights are here: compute them (minutes on a CPU)."
            else:
                text += " Its weights are not in the run store either, so they cannot be computed here."
            self._empty(text)
            return
        self.header.value = _msg(f"{what} of {network_label(row)}, read from {self.data['path']}")
        with self.app.quiet():
            old = self.choice.value
            self.choice.options = self._choices()
            values = [c[1] if isinstance(c, tuple) else c for c in self.choice.options]
            self.choice.value = old if old in values else values[0]
        self.choice.layout.display = ""
        self.draw()

    def _empty(self, text):
        for f in self.figs:     # figures before the message, as in _NetworkPanel.refresh
            f.clear()
        self.choice.layout.display = "none"
        self.text.value = ""
        self.header.value = _msg(text, "warn")

    def _can_compute(self) -> bool:
        """Weights are here, in a run the store counts as finished (an analysis of a stored run would otherwise train it)."""
        cfg = _config(self.row, self.app.results)
        return (cfg is not None and _weights_dir(self.app.results, self.row, self.app.runs_root) is not None
                and self.app.store().is_done(cfg))

    def compute(self):
        """Compute the missing results from the weights (button), with a progress bar, then show them."""
        self.button.disabled, self.bar.layout.display, self.bar.value = True, "", 0
        try:
            with self.log:   # the analyses' own tqdm bars show here
                self._compute(_config(self.row, self.app.results), self.app.store(),
                              self.app.analyses_root / self.kind)
            self.log.clear_output()
        except Exception as e:  # noqa: BLE001
            self.header.value = _msg(f"Computing failed: {type(e).__name__}: {e}", "error")
            return
        finally:
            self.button.disabled, self.bar.layout.display = False, "none"
        self.load(self.row)

    def draw(self):
        if self.app.muted or self.data is None or self.choice.value is None:
            return
        try:
            self._draw(self.choice.value)
        except Exception as e:  # noqa: BLE001
            self.text.value = _msg(f"Could not draw {self.choice.value}: {type(e).__name__}: {e}", "error")


class _CriticalTab(_AnalysisTab):
    """Class -> its top filters (contributions, AM images) and the distilled network's TP/FP."""

    def __init__(self, app):
        super().__init__(app, "critical", "class")

    def _choices(self):
        return list(self.data["maps"].classes)

    def _draw(self, cls):
        from . import critical, plots_critical
        maps, meta, layer = self.data["maps"], self.data["meta"], self.data["maps"].layers[0]
        top = critical.top_filters(maps, layer, cls, TOP_K)
        rows = self.data["table"][self.data["table"]["class_name"] == cls]
        rates = {c: rows[c].iloc[0] for c in ("kept", "tp", "fp", "auc", "base_tp", "base_fp", "balanced",
                                              "collapsed") if c in rows.columns and len(rows)}
        rates = {k: _fmt(float(v)) if isinstance(v, float) else str(v) for k, v in rates.items()}
        self.text.value = (f"<b>{critical.paper_name(layer)}: top-{TOP_K} filters of '{cls}'</b>: "
                           + ", ".join(str(int(f)) for f in top["filter"])
                           + f"<br><b>distilled network at ratio {meta.get('ratio', '?')}</b> (rule "
                           f"{meta.get('rule', '?')}):" + _table(rates))
        self.figs[0].show(lambda: critical_figure(self.data, cls, TOP_K, self.app.results.profile))
        am = self._am(cls)
        self.figs[1].show(lambda: None if am is None else plots_critical.plot_am_grid(
            am[0], am[1], ncols=TOP_K + 1, title=f"Activation maximisation: top filters of '{cls}', then its logit"))
        if am is None:
            here = self._can_compute()
            self.button.layout.display = "" if here else "none"
            self.text.value += _msg(f"No activation-maximisation images of '{cls}' are stored; "
                                    + ("compute them from the weights (button above)." if here
                                       else "the weights are not here to compute them."), "warn")

    def _am(self, cls, store=None):
        """Stored AM images of ``cls`` (from any stored class set holding it); with ``store``, computed
        from the weights when not stored. None when neither."""
        from . import studies
        cfg = _config(self.row, self.app.results)
        if cfg is None:
            return None
        maps, root = self.data["maps"], self.app.analyses_root / "critical"
        # stored images of any class set holding cls (the book asks for cat and dog together)
        am = studies.stored_am(root, cfg.profile, cfg.dataset, f"{cfg.name}-{cfg.key()}", cls)
        if am is not None:
            return am_of(am, cls)
        if store is None:
            return None
        return am_of(studies.am_run(cfg, maps, (cls,), layer=maps.layers[0], top_k=TOP_K, store=store,
                                     results_dir=root, progress=True), cls)

    def _compute(self, cfg, store, root):
        from .studies import critical_run
        self.bar.max = 2
        if self.data is None:
            critical_run(cfg, store=store, results_dir=root, map_batches=8, progress=True)
        self.bar.value = 1
        self.data = stored_analysis("critical", self.app.results, self.row, self.app.analyses_root)
        classes = list(self.data["maps"].classes)
        self._am(self.choice.value if self.choice.value in classes else classes[0], store)
        self.bar.value = 2


class _AutopsyTab(_AnalysisTab):
    """Layer -> its weight histogram, filter-PCA curve and the sparsity after it."""

    def __init__(self, app):
        super().__init__(app, "autopsy", "layer")

    def _choices(self):
        from .plots_autopsy import short_layer
        t = self.data["stats_layer"]
        return [(f"{short_layer(r.layer)} ({r.kind})", r.layer) for r in t.itertuples() if r.kind in ("conv", "fc")]

    def _draw(self, layer):
        from .plots_autopsy import short_layer
        self.text.value = f"<b>{short_layer(layer)}</b>" + _table(autopsy_summary(self.data, layer))
        self.figs[0].show(lambda: autopsy_figure(self.data, layer, self.app.results.profile))
        self.figs[1].clear()

    def _compute(self, cfg, store, root):
        from .studies import autopsy_run
        autopsy_run(cfg, store=store, results_dir=root, progress=True)
        self.bar.value = 1


class Explorer:
    """The explorer app: results drop-down, two network panels, critical-paths and autopsy tabs.

    Args:
        profile: which stored results (default: ``campaign`` when stored, else ``cpu``, else the
            first stored profile). Never trains: without stored results the page says so.
        results_root: ``results/triage`` folder (default :func:`triage.report.default_results_root`).
        runs_root: run store with weights (default ``$TRIAGE_RUNS`` or ``<checkout>/runs``).
        analyses_root: folder holding ``critical/`` and ``autopsy/`` (default ``<checkout>/results``).
        data_root: data folder (test images for maps computed from weights).

    Attributes:
        widget: the ``ipywidgets`` tree (displaying the Explorer displays it).
        a, b: the two network panels; ``b`` shows when ``compare`` is ticked.

    Example:
        >>> app = Explorer(profile="cpu")       # doctest: +SKIP
        >>> app.a.block.value = 3               # doctest: +SKIP  (redraws panel A)
    """

    def __init__(self, profile=None, results_root=None, runs_root=None, analyses_root=None, data_root=None):
        import ipywidgets as w
        from .report import default_results_root, stored_profiles
        self.results_root = Path(results_root) if results_root is not None else default_results_root()
        self.runs_root, self.data_root = runs_root, data_root
        self.analyses_root = Path(analyses_root) if analyses_root is not None else _analyses_root()
        self.results, self.muted, self._fig2 = None, 0, {}
        profiles = stored_profiles(self.results_root)
        self.profile = w.Dropdown(options=profiles, description="results", layout=w.Layout(width="210px"),
                                  style={"description_width": "55px"})
        self.profile.add_class("triage-profile")
        self.compare = w.Checkbox(value=False, description="compare with a second network", indent=False)
        self.compare.add_class("triage-compare")
        self.header = w.HTML()
        self.a = _NetworkPanel(self, "a")
        self.b = _NetworkPanel(self, "b", init="random")
        self.b.widget.layout.display = "none"
        self.critical, self.autopsy = _CriticalTab(self), _AutopsyTab(self)
        self.tabs = w.Tab(children=[w.HBox([self.a.widget, self.b.widget]), self.critical.widget,
                                    self.autopsy.widget])
        for i, title in enumerate(("Networks", "Critical paths", "Autopsy")):
            self.tabs.set_title(i, title)
        self.widget = w.VBox([w.HBox([self.profile, self.compare]), self.header, self.tabs])
        self.widget.add_class("triage-explorer")
        if not profiles:
            self.header.value = _msg(f"No stored results under {self.results_root}: run `python -m triage grid "
                                     "--dataset DATASET --profile cpu` and `python -m triage export --profile cpu`.",
                                     "error")
            self.tabs.layout.display = "none"
            return
        wanted = profile or default_profile(self.results_root)
        self.profile.value = wanted if wanted in profiles else None   # not stored: load() says so
        self.profile.observe(lambda _: self.profile.value and self.load(self.profile.value), "value")
        self.compare.observe(lambda _: self._compare(), "value")
        self.load(wanted)

    @contextlib.contextmanager
    def quiet(self):
        """Set several drop-downs without a redraw for each (one redraw after)."""
        self.muted += 1
        try:
            yield
        finally:
            self.muted -= 1

    def load(self, profile: str):
        """Read the stored results of ``profile`` and redraw (a message if there are none)."""
        from .report import load
        try:
            self.results = load(profile, self.results_root)
        except (ValueError, OSError) as e:
            self.header.value = _msg(str(e), "error")
            self.tabs.layout.display = "none"
            return
        self.tabs.layout.display = ""
        self.header.value = _msg(f"{self.results.tag}: {self.results.coverage_text()}")
        self.a.set_options(self.results)
        self.b.set_options(self.results, self.a.dataset.value)
        self.a.refresh()
        if self.compare.value:
            self.b.refresh()

    def _compare(self):
        self.b.widget.layout.display = "" if self.compare.value else "none"
        if self.compare.value:
            self.b.refresh()

    def network_changed(self, panel):
        if panel is self.a:
            for tab in (self.critical, self.autopsy):
                try:
                    tab.load(panel.row)
                except Exception as e:  # noqa: BLE001
                    tab.header.value = _msg(f"Could not read the stored results: {type(e).__name__}: {e}", "error")

    def store(self):
        """The run store holding weights (``runs_root``, else the default one)."""
        from .experiments import RunStore
        return RunStore(self.runs_root) if self.runs_root is not None else RunStore()

    def fig2(self, row):
        """Fig. 2 with ``row`` circled; each data set's figure is drawn once and reused."""
        import matplotlib.pyplot as plt
        key = (self.results.profile, row["dataset"])
        fig = fig2_figure(self.results, row, self._fig2.get(key))
        plt.close(fig)   # kept here, not in pyplot: a closed figure still saves
        self._fig2[key] = fig
        return fig

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def app(profile=None, results_root=None, runs_root=None, *, live: bool | None = None, **kwargs):
    """The notebook's explorer cell: the :class:`Explorer` where a frontend can run it, else a note
    on how to open it (the built book is static: a widget there is dead weight).

    Args:
        live: force either (None: :func:`is_live`).
        **kwargs: passed to :class:`Explorer`.
    """
    if live if live is not None else is_live():
        return Explorer(profile, results_root, runs_root, **kwargs)
    from IPython.display import Markdown
    return Markdown(_HOW_TO_OPEN)


def explorer(results=None, **kwargs):
    """The explorer's widget (``Explorer(...).widget``); ``results``: a ``report.load`` output to show.

    Example:
        >>> explorer(report.load("cpu"))        # doctest: +SKIP
    """
    if results is not None:
        kwargs.setdefault("profile", results.profile)
        if results.path is not None:
            kwargs.setdefault("results_root", Path(results.path).parent)
    return Explorer(**kwargs).widget


# ----------------------------------------------------------------------------- command line

def notebook_path() -> Path:
    """``book/explorer.ipynb`` of this checkout."""
    return Path(__file__).resolve().parents[1] / "book" / "explorer.ipynb"


def add_commands(subparsers) -> tuple[str, ...]:
    """Add ``explore`` (serve the explorer with Voilà) to ``triage``'s subparsers."""
    p = subparsers.add_parser("explore", help="serve the interactive explorer (Voilà) on localhost")
    p.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default 8866)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    return ("explore",)


def main(args) -> int:
    """Run ``voila book/explorer.ipynb`` on 127.0.0.1; returns its exit code (2: not available)."""
    import subprocess
    nb = notebook_path()
    if not nb.is_file():
        print(f"triage: error: {nb} not found: `triage explore` needs a checkout of triage", file=sys.stderr)
        return 2
    import importlib.util
    if importlib.util.find_spec("voila") is None:
        print("triage: error: Voilà is not installed: pip install -e '.[book]'", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "voila", str(nb), "--Voila.ip=127.0.0.1", f"--port={args.port}"]
    if args.no_browser:
        cmd.append("--no-browser")
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
