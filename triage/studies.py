"""Analyses of stored runs: train or reuse a run, run the pure analyses on it, store their tables.

Reason to change: how an analysis finds its run, its images and its place in the result store.

The analyses (:mod:`triage.autopsy`, :mod:`triage.robustness`, :mod:`triage.kmeans`,
:mod:`triage.critical` and the ``critical_*`` modules) are pure functions of ``(model, loader)``
and know nothing of runs; this is the only one of them that imports :mod:`triage.experiments`.
Every result is stored once in a :class:`triage.store.ResultStore`, addressed by a hash of
everything that determines it -- the analysis and its format, the run (name and config key),
the data set, the batch size, the image counts and every parameter -- below a folder
``<profile>/<dataset>/<run>/`` for people browsing it. A later call with the same spec reads
the tables back without touching the model, so the book builds from stored results alone.

* :func:`autopsy_run`, :func:`autopsy_bases` -- every autopsy table of one run, and of the
  base of each data set of a profile (book/autopsy.ipynb).
* :func:`critical_run`, :func:`am_run` -- maps, Table 1 and the ratio sweep of one run, and
  activation maximisation of its top filters (the explorer).
* :func:`critical_base`, :func:`find_base` -- the critical-paths chapter on one base run
  folder (book/critical_paths.ipynb).

    >>> res = autopsy_run(triage.make_config("mnist", profile="smoke"))   # doctest: +SKIP
    >>> res["rounding"]                                                   # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from . import autopsy as ap
from . import critical as cr
from . import critical_am as cam
from . import critical_distill as cd
from . import critical_chapter as cc
from . import critical_eval as ce
from ._version import __version__
from . import experiments as ex   # as a module: tests (and users) may patch ex.run
from .kmeans import filter_kmeans_sweep, kmeans_sweep
from .robustness import noise_sweep, rounding_table
from .store import Entry, ResultStore

__all__ = ["SWEEPS", "AUTOPSY_BATCH", "autopsy_spec", "autopsy_run", "autopsy_bases", "profile_note", "critical_spec",
           "critical_run", "am_spec", "am_run", "stored_am", "critical_base_spec", "critical_base", "find_base",
           "read_analysis"]


def _silent(*_):
    pass


def _trained(cfg, store, *, data_root, device, progress) -> torch.nn.Module:
    """The trained network of ``cfg``: reused from ``store`` (or trained there first)."""
    run_dir = ex.run(cfg, store or ex.RunStore(), data_root=data_root, device=device, progress=progress, log=_silent)
    return ex.load_model(run_dir, device)


def _where(cfg) -> tuple[str, str, str]:
    return cfg.profile, cfg.dataset, f"{cfg.name}-{cfg.key()}"


def _check_positive(**values) -> None:
    for name, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer{' or None' if 'class' in name else ''}, got {v!r}")


# ----------------------------------------------------------------------------- autopsy
# Default sweeps of the chapter (book/autopsy.ipynb); the paper's own points where it gives them.
SWEEPS = {
    "noise_ps": (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0),   # Fig. 5: 0-100%
    "noise_draws": 3,
    "layer_noise_ps": (0.2, 0.5),                                  # one layer at a time
    "layer_noise_draws": 1,
    "decimals": (None, 5, 4, 3, 2, 1),                             # Table III
    "ks": (1, 2, 4, 8, 16, 32, 64, 128, 256),                      # Fig. 6
    "filter_clusters": (1, 2, 4, 8, 16, 32, 64),                   # Fig. 7
    "bn_batches": 4,         # training batches (256 images) to re-estimate BN after filter k-means
}
AUTOPSY_BATCH = 256   # images per batch: with max_batches and bn_batches it sets how many images are used
# Bump when an analysis changes its output: stored results of older versions are then recomputed.
_AUTOPSY_VERSION = 1
_AUTOPSY_TABLES = ("params", "filters", "stats_layer", "stats_kind", "hist_kind", "hist_fc", "pca", "sparsity",
                   "noise", "layer_noise", "rounding", "kmeans", "filter_kmeans")


def autopsy_spec(run: str, dataset: str, params: dict) -> dict:
    """The store address of an autopsy: run ``<name>-<config key>``, data set, batch size, parameters."""
    return {"analysis": "autopsy", "run": run, "dataset": dataset, "split": "test",
            "batch_size": AUTOPSY_BATCH, "params": params}


def autopsy_run(cfg, *, store=None, results_dir="results/autopsy", max_batches: int | None = None,
                recompute: bool = False, device="cpu", data_root=None, seed: int = 0,
                progress: bool = False, **sweeps) -> dict:
    """Every analysis of the autopsy paper on the trained network of one run config, stored and reused.

    The run is trained or reused with ``triage.run`` (so a stored base costs nothing) and
    evaluated on the run's own test subset, in batches of :data:`AUTOPSY_BATCH`. The tables
    are stored as CSV in ``<results_dir>/<profile>/<dataset>/<run name>-<run key>/<address>/``
    (:func:`autopsy_spec`); a later call with the same run and parameters reads them back.

    Args:
        cfg: a ``RunConfig`` (``triage.make_config(dataset, profile=...)``).
        store: the ``RunStore`` of the runs (None: the default one).
        results_dir: root of the stored analysis results.
        max_batches: test batches per evaluation (None: the whole test subset).
        recompute: ignore stored results.
        device: where the model and data live during the analyses.
        data_root: data root for the loaders.
        seed: seed of the noise draws and filter k-means seeding.
        progress: tqdm bars.
        **sweeps: overrides of :data:`SWEEPS` (noise_ps, noise_draws, layer_noise_ps,
            layer_noise_draws, decimals, ks, filter_clusters, bn_batches).

    Returns:
        dict with ``meta`` (parameters, base accuracy, timings) and one DataFrame per
        table: params, filters, stats_layer, stats_kind, hist_kind, hist_fc, pca,
        sparsity, noise, layer_noise, rounding, kmeans, filter_kmeans.
    """
    from .data import spec
    from .loaders import get_loaders

    unknown = set(sweeps) - set(SWEEPS)
    if unknown:
        raise ValueError(f"unknown sweep(s) {', '.join(sorted(unknown))}; choose from {', '.join(SWEEPS)}")
    params = {**SWEEPS, **sweeps, "max_batches": max_batches, "seed": seed, "version": _AUTOPSY_VERSION}
    params = {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in params.items()}
    key, where = autopsy_spec(f"{cfg.name}-{cfg.key()}", cfg.dataset, params), _where(cfg)
    results = ResultStore(results_dir)
    hit = None if recompute else results.get(key, where)
    if hit is not None:
        return {k: v for k, v in read_analysis(hit).items() if k != "path"}

    t0 = time.perf_counter()
    model = _trained(cfg, store, data_root=data_root, device=device, progress=progress)
    # The run's own stratified subsets: its test images, and training images for BN statistics.
    train, test, sp = get_loaders(cfg.dataset, root=data_root, batch_size=AUTOPSY_BATCH, device=device,
                                  train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class,
                                  seed=cfg.seed, resolution=cfg.resolution)
    nc = spec(cfg.dataset).num_classes
    common = dict(max_batches=max_batches, num_classes=nc, progress=progress)
    base = ap.accuracy(model, test, max_batches)
    fcs = list(ap.weight_layers(model, kinds=("fc",)))
    res = {
        "params": ap.parameter_table(model).reset_index(),
        "filters": ap.filter_table(model).reset_index(),
        "stats_layer": ap.weight_stats(model).reset_index(),
        "stats_kind": ap.weight_stats(model, by="kind").reset_index(),
        "hist_kind": ap.weight_histogram(model, by="kind"),
        "hist_fc": ap.weight_histogram(model, by="layer", layers=fcs),
        "pca": ap.filter_pca(model),
        "sparsity": ap.output_sparsity(model, test, max_batches, num_classes=nc).reset_index(),
        "noise": noise_sweep(model, test, params["noise_ps"], params["noise_draws"], seed=seed, **common),
        "layer_noise": noise_sweep(model, test, params["layer_noise_ps"], params["layer_noise_draws"],
                                   per_layer=True, seed=seed, **common),
        "rounding": rounding_table(model, test, params["decimals"], **common),
        "kmeans": kmeans_sweep(model, test, params["ks"], **common),
        "filter_kmeans": filter_kmeans_sweep(model, test, params["filter_clusters"], seed=seed,
                                             bn_loader=train, bn_batches=params["bn_batches"], **common),
    }
    meta = {
        "params": params, "run_key": cfg.key(), "run_name": cfg.name,
        "dataset": cfg.dataset, "profile": cfg.profile, "run_seed": cfg.seed,
        "base_acc": base["acc"], "base_loss": base["loss"], "test_images": base["n"],
        "num_classes": sp.num_classes, "data_note": sp.note, "triage_version": __version__,
        "seconds": round(time.perf_counter() - t0, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta["analysis_key"] = results.path(key, where).name

    def write(folder: Path) -> None:
        for t in _AUTOPSY_TABLES:
            res[t].to_csv(folder / f"{t}.csv", index=False)

    res["meta"] = results.put(key, write, where, meta).meta
    return res


def autopsy_bases(profile: str, datasets: Sequence[str], *, seed: int = 0, runs_root=None, results_dir=None,
                  **kwargs) -> dict:
    """:func:`autopsy_run` on the base network of each data set of a profile (book/autopsy.ipynb).

    The bases are looked up in the run store (``runs_root``, else ``$TRIAGE_RUNS``, else the
    checkout's ``runs/``) and in the checkout's committed ``results/triage``, where the
    campaign's bases are exported with their weights, so a fresh clone finds them without
    training; the analyses are stored under ``results_dir`` (None: the checkout's
    ``results/autopsy``).

    Args:
        profile: the profile of the bases (``campaign``, ``cpu``, ...).
        datasets: data sets, in the order the chapter shows them.
        seed: seed of the base runs and of the analyses' noise draws.
        **kwargs: passed to :func:`autopsy_run` (max_batches, recompute, device, data_root, sweeps).

    Returns:
        data set -> :func:`autopsy_run` output.
    """
    import os
    repo = Path(__file__).resolve().parents[1]
    store = ex.RunStore(runs_root or os.environ.get("TRIAGE_RUNS") or repo / "runs",
                        results=repo / "results" / "triage")
    return {ds: autopsy_run(ex.make_config(ds, profile=profile, seed=seed), store=store, seed=seed,
                            results_dir=results_dir or repo / "results" / "autopsy", **kwargs)
            for ds in datasets}


def profile_note(profile: str) -> str:
    """One sentence on what the autopsy verdicts of a profile's bases can claim (the chapter's caveat)."""
    p = ex.PROFILES[profile]
    if profile == "smoke":
        return ("At the `smoke` profile these verdicts describe tiny, briefly trained networks evaluated on a "
                "few hundred images: they illustrate the method, not the paper's claims.")
    if profile == "cpu":
        return (f"These verdicts describe networks of width {p.width:g} trained for {p.base_epochs} epochs on "
                f"about {p.train_images:,} images (see the first table for each base's accuracy, far below "
                "full scale on CIFAR-100 and Stanford Dogs); `-p profile paper` gives claims about full-width "
                "VGG16-BN trained as in the paper.")
    if p.stopping == "plateau":
        widths = f"width {p.width:g}" + "".join(f" ({d}: {w:g})" for d, w in p.widths)
        return (f"These verdicts describe the {profile} profile's converged bases: {widths} VGG16-BN "
                "trained on the full training sets to a validation plateau (see the first table for their "
                "accuracy), evaluated on the first test images as the first table says.")
    return "These verdicts describe full-width VGG16-BN trained as in the paper's Tables 1-2."


def read_analysis(entry: Entry) -> dict:
    """A stored entry as the dict its analysis returned: one DataFrame per CSV table, ``maps``
    (:class:`~triage.critical.ClassMaps`) where stored, ``meta`` (the autopsy's as stored, the
    others' with ``source``: the folder read) and ``path`` (the entry's folder)."""
    autopsy = entry.spec.get("analysis") == "autopsy"
    # autopsy tables hold "None" and "all" as values (decimals kept): only "" is missing there
    na = dict(keep_default_na=False, na_values=[""]) if autopsy else {}
    out = {p.stem: pd.read_csv(p, **na) for p in sorted(entry.path.glob("*.csv")) if p.stem != "maps"}
    if (entry.path / "maps.csv").is_file():
        out["maps"] = cr.ClassMaps.from_csv(entry.path / "maps.csv")
    out["meta"] = dict(entry.meta) if autopsy else {**entry.meta, "source": f"read from {entry.path}"}
    out["path"] = entry.path
    return out


# ----------------------------------------------------------------------------- critical paths of one run config
_CRITICAL_FORMAT = 3  # bump when the stored tables change, so that older results are recomputed


def critical_spec(run: str, dataset: str, batch_size: int, params: dict) -> dict:
    """The store address of :func:`critical_run`'s tables."""
    return {"analysis": "critical", "run": run, "dataset": dataset, "split": {"maps": "train", "rates": "test"},
            "batch_size": batch_size, "params": params}


def critical_run(cfg, *, store=None, results_dir="results/critical", layer: str = "Conv5_1",
                 ratio: float = cr.PAPER_RATIO, ratios: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0),
                 rule: str = "argmax", map_batches: int | None = None, test_batches: int | None = None,
                 batch_size: int = 250, recompute: bool = False, device="cpu", data_root=None,
                 progress: bool = False) -> dict:
    """:func:`triage.critical_distill.analyse` on the trained network of one run config, stored and reused.

    The run is trained or reused with ``triage.run``; the maps come from the run's training
    subset, the rates from its test subset (both without flips). The tables (``table``,
    ``sweep``, ``layer_std`` and ``maps`` -- the maps of ``layer`` only) are stored under
    ``<results_dir>/<profile>/<dataset>/<run name>-<run key>/<address>/`` (:func:`critical_spec`).

    Args:
        cfg: a ``RunConfig`` (``triage.make_config(dataset, profile=...)``).
        store: the ``RunStore`` of the runs (None: the default one).
        results_dir: root of the stored results.
        layer: the layer whose maps are kept (Fig. 2's Conv5_1).
        ratio, ratios, rule, map_batches, test_batches: as in :func:`triage.critical_distill.analyse`.
        batch_size: loader batch size. With ``map_batches``/``test_batches`` it sets how many
            images are used, so it is part of the results' address.
        recompute: ignore stored results.
        device, data_root, progress: where the model runs; data root; tqdm bars.

    Returns:
        ``analyse``'s dict, with ``maps`` holding ``layer`` only and ``meta`` also naming the
        run, its profile and ``source`` (computed now, or the folder it was read from).
    """
    from .loaders import get_loaders

    ratio = cr._check_ratio(ratio)
    ratios = sorted({cr._check_ratio(r) for r in ratios} | {ratio})
    cd._check_rule(rule)
    _check_positive(batch_size=batch_size)
    params = {"layer": layer, "ratio": ratio, "ratios": ratios, "rule": rule, "map_batches": map_batches,
              "test_batches": test_batches, "format": _CRITICAL_FORMAT}
    key, where = critical_spec(f"{cfg.name}-{cfg.key()}", cfg.dataset, batch_size, params), _where(cfg)
    results = ResultStore(results_dir)
    hit = None if recompute else results.get(key, where)
    if hit is not None:
        return {k: v for k, v in read_analysis(hit).items() if k != "path"}
    model = _trained(cfg, store, data_root=data_root, device=device, progress=progress)
    name = cr.resolve_layers(model, layer)[0]
    train, test, sp = get_loaders(cfg.dataset, root=data_root, batch_size=batch_size, device=device,
                                  train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class,
                                  seed=cfg.seed, resolution=cfg.resolution, flip=False)
    res = cd.analyse(model, train, test, class_names=sp.classes, ratio=ratio, ratios=ratios, rule=rule,
                     map_batches=map_batches, test_batches=test_batches, progress=progress)
    res["maps"] = res["maps"].select([name])
    res["meta"].update(params={**params, "batch_size": batch_size}, run=f"{cfg.name}-{cfg.key()}",
                       profile=cfg.profile, dataset=cfg.dataset, seed=cfg.seed, width=cfg.width,
                       triage_version=__version__, data_note=sp.note)

    def write(folder: Path) -> None:
        for t in ("table", "sweep", "layer_std"):
            res[t].to_csv(folder / f"{t}.csv", index=False)
        res["maps"].to_csv(folder / "maps.csv")

    results.put(key, write, where, res["meta"])
    res["meta"]["source"] = "computed now"
    return res


def am_spec(run: str, dataset: str, params: dict) -> dict:
    """The store address of :func:`am_run`'s images (no images are read: no batch size)."""
    return {"analysis": "am", "run": run, "dataset": dataset, "params": params}


def am_run(cfg, maps: cr.ClassMaps, classes: Sequence, *, layer: str = "Conv5_1", top_k: int = 3,
           steps: int = 128, seed: int = 0, store=None, results_dir="results/critical",
           recompute: bool = False, device="cpu", data_root=None, progress: bool = False) -> dict | None:
    """Activation maximisation of each class's top filters and of the class logits, stored and reused.

    For every class of ``classes`` its ``top_k`` filters of ``layer`` (``top_filters`` on
    ``maps``), then one image per class logit, as in the paper's Fig. 2. The images are
    stored as ``am.npz`` under the run's folder (:func:`am_spec`: the filters chosen and
    every AM parameter). Nothing is trained for AM alone: without stored images and without
    a finished run in ``store`` the result is None.

    Args:
        cfg: the run config whose trained network is analysed.
        maps: that network's ``ClassMaps`` (``critical_run(...)["maps"]``).
        classes: class names or indexes.
        layer, top_k: the filters, as in ``triage.critical.top_filters``.
        steps, seed: as in ``triage.critical_am.activation_maximisation``.
        store: the ``RunStore`` of the runs (None: the default one).
        results_dir: root of the stored results (that of :func:`critical_run`).
        recompute, device, data_root, progress: ignore stored images; where the model runs;
            data root for the normalisation; tqdm bars.

    Returns:
        None, or a dict with ``images`` ((n, C, H, W) in [0, 1]), ``titles``, ``start``
        and ``final`` (the objective before and after, per image), ``layer`` (its
        name in the model), ``filters`` ({class name: filters}) and ``source``.
    """
    from .data import channel_stats

    _check_positive(top_k=top_k)
    names = [maps.classes[maps.class_index(c)] for c in classes]
    if not names:
        raise ValueError("classes is empty: give at least one class")
    top = {c: [int(f) for f in cr.top_filters(maps, layer, c, top_k)["filter"]] for c in names}
    # the classes in the order asked: the images come in that order
    params = {"layer": maps.layer(layer), "classes": names, "filters": top, "steps": steps, "seed": seed,
              "format": 1}
    key, where = am_spec(f"{cfg.name}-{cfg.key()}", cfg.dataset, params), _where(cfg)
    titles = [f"{c}: filter {f}" for c in names for f in top[c]] + [f"logit '{c}'" for c in names]
    out = {"titles": titles, "layer": params["layer"], "filters": top}
    results = ResultStore(results_dir)
    hit = None if recompute else results.get(key, where)
    if hit is not None:
        with np.load(hit.path / "am.npz") as z:
            return {**out, **{k: torch.from_numpy(z[k]) for k in ("images", "start", "final")},
                    "source": f"read from {hit.path}"}
    store = store or ex.RunStore()
    if not store.is_done(cfg):
        return None
    model = _trained(cfg, store, data_root=data_root, device=device, progress=False)
    mean, std = channel_stats(cfg.dataset, data_root)
    kw = dict(steps=steps, mean=mean, std=std, seed=seed, progress=progress)
    am = cam.activation_maximisation(model, params["layer"], [f for c in names for f in top[c]], **kw)
    logit = cam.activation_maximisation(model, "logits", [maps.class_index(c) for c in names], **kw)
    res = {"images": torch.cat([am.images, logit.images]), "start": torch.cat([am.start, logit.start]),
           "final": torch.cat([am.activation, logit.activation])}
    results.put(key, lambda d: np.savez_compressed(d / "am.npz", **{k: v.numpy().astype(np.float32)
                                                                    for k, v in res.items()}), where,
                {"titles": titles})
    return {**out, **res, "source": "computed now"}


def stored_am(results_dir, profile: str, dataset: str, run: str, cls: str) -> dict | None:
    """The newest stored :func:`am_run` images that include class ``cls`` of run ``run``, or None."""
    for e in ResultStore(results_dir).entries((profile, dataset, run), analysis="am"):
        if cls in e.spec["params"]["classes"]:
            with np.load(e.path / "am.npz") as z:
                return {"titles": e.meta["titles"], "layer": e.spec["params"]["layer"],
                        "filters": e.spec["params"]["filters"],
                        **{k: torch.from_numpy(z[k]) for k in ("images", "start", "final")},
                        "source": f"read from {e.path}"}
    return None


# ----------------------------------------------------------------------------- the critical-paths chapter of one base
_BASE_FORMAT = 3  # bump when the stored files change, so that older results are recomputed
_BASE_TABLES = ("rates", "original", "roc", "exclusiveness", "exclusiveness_summary", "layer_std")


def _base_where(run_dir) -> tuple[str, str, str]:
    """``(profile, dataset, run)`` of a base run folder ``<runs>/<profile>/<dataset>/<run>`` (or of its
    export, ``results/<profile>/runs/<dataset>/<run>``): read from the path alone, so that a book
    without the run's weights finds its results."""
    run_dir = Path(run_dir)
    if len(run_dir.parts) < 3:
        raise ValueError(f"{run_dir} is not a run folder <runs>/<profile>/<dataset>/<run>")
    profile = run_dir.parent.parent
    if profile.name == "runs" and len(run_dir.parts) >= 4:  # an exported run: results/<profile>/runs/<dataset>/<run>
        profile = profile.parent
    return profile.name, run_dir.parent.name, run_dir.name


def critical_base_spec(run: str, dataset: str, batch_size: int, params: dict) -> dict:
    """The store address of :func:`critical_base`'s tables."""
    return {"analysis": "critical_eval", "run": run, "dataset": dataset,
            "split": {"maps": "train", "val": "train, held out", "rates": "test"}, "batch_size": batch_size,
            "params": params}


def critical_base(run_dir, *, results_dir="results/critical", ratio: float = cr.PAPER_RATIO,
                  ratios: Sequence[float] = ce.DEFAULT_RATIOS, calibrations=tuple(ce.CALIBRATIONS),
                  layer: str = "Conv5_1", am_classes: Sequence = ("cat", "dog"), top_k: int = 3,
                  am_steps: int = 128, map_per_class: int | None = 500, val_per_class: int | None = 500,
                  test_per_class: int | None = None, batch_size: int = 500, tp: float = ce.PAPER_TP, seed: int = 0,
                  recompute: bool = False, device="cpu", data_root=None, progress: bool = False) -> dict:
    """The whole critical-paths chapter on one trained base run folder, stored and reused.

    Runs :func:`triage.critical_chapter.analyse_base_model` on the images the run's config
    implies (maps and BN statistics on ``map_per_class`` of its training images, thresholds
    on ``val_per_class`` held-out ones, rates on the test split or ``test_per_class`` of it)
    and stores its tables (``rates``, ``original``, ``roc``, ``exclusiveness``,
    ``exclusiveness_summary``, ``layer_std``, ``maps`` of ``layer``, ``am.npz``) under
    ``<results_dir>/<profile>/<dataset>/<run>/<address>/`` (:func:`critical_base_spec`:
    every parameter that changes a number, batch size and image counts included). A later
    call with the same parameters reads them back without the weights.

    Args:
        run_dir: the base run folder (``config.json``, ``weights.pt``; from
            ``RunStore().path(cfg)`` or ``runs/<profile>/<dataset>/base-<key>``).
        results_dir: root of the stored results.
        ratio, ratios, calibrations, layer, am_classes, top_k, am_steps, tp, seed: as in
            :func:`triage.critical_chapter.analyse_base_model`.
        map_per_class, val_per_class, test_per_class: images per class (None: all).
        batch_size: images per batch (BN re-estimation averages per batch, so it is in the address).
        recompute, device, data_root, progress: ignore stored results; where the model runs;
            data root; tqdm bars.

    Returns:
        ``{'rates', 'original', 'roc', 'exclusiveness', 'exclusiveness_summary', 'layer_std',
        'maps', 'am', 'meta'}``; ``meta['source']`` says whether it was computed or read.

    Raises:
        FileNotFoundError: nothing stored for these parameters and no weights in ``run_dir``.
        ValueError: a bad parameter (ratio outside (0, 1], unknown calibration or class, ...).

    Example:
        >>> res = critical_base("runs/wide/cifar10/base-0123abcd4567", device="cuda")   # doctest: +SKIP
        >>> critical_eval.paper_table(res["rates"], base_mb=res["meta"]["base_mb"])     # doctest: +SKIP
    """
    from .data import channel_stats, load_split, spec
    from .loaders import DeviceLoader

    run_dir = Path(run_dir)
    ratio = cr._check_ratio(ratio)
    ratios = sorted({cr._check_ratio(r) for r in ratios} | {ratio})
    cals = [c.name for c in ce._check_calibrations(calibrations)]
    tp = ce._check_tp(tp)
    _check_positive(map_per_class=map_per_class, val_per_class=val_per_class, test_per_class=test_per_class,
                    batch_size=batch_size, top_k=top_k, am_steps=am_steps)
    params = {"ratio": ratio, "ratios": ratios, "calibrations": cals, "layer": layer,
              "am_classes": [str(c) for c in am_classes], "top_k": top_k, "am_steps": am_steps,
              "map_per_class": map_per_class, "val_per_class": val_per_class, "test_per_class": test_per_class,
              "tp": tp, "seed": seed, "format": _BASE_FORMAT}
    where = _base_where(run_dir)
    key = critical_base_spec(where[2], where[1], batch_size, params)
    results = ResultStore(results_dir)
    hit = None if recompute else results.get(key, where)
    if hit is not None:
        return _read_base(hit)
    if not (run_dir / "weights.pt").is_file():
        stored = sorted(e.path.name for e in results.entries(where, analysis="critical_eval"))
        out = results.path(key, where)
        raise FileNotFoundError(f"no stored critical-path results for these parameters (address {out.name}) under "
                                f"{out.parent}" + (f" (stored: {', '.join(stored)})" if stored else "")
                                + f", and no trained weights in {run_dir} to compute them")

    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    model = ex.load_model(run_dir, device)
    sp = spec(cfg["dataset"])
    xtr, ytr = load_split(cfg["dataset"], "train", data_root)
    xte, yte = load_split(cfg["dataset"], "test", data_root)
    sets = cc._image_sets(cfg, ytr, map_per_class, val_per_class, seed)
    if test_per_class is not None:
        keep = cc._stratified(yte, torch.arange(len(yte)), test_per_class, seed + 15_485_863)
        xte, yte = xte[keep], yte[keep]
    mean, std = channel_stats(cfg["dataset"], data_root)

    def loader(x, y):
        return DeviceLoader(x, y, batch_size=batch_size, mean=mean, std=std, train=False, flip=False,
                            device=device, resolution=cfg.get("resolution"))

    res = cc.analyse_base_model(
        model, maps_loader=loader(xtr[sets["maps"]], ytr[sets["maps"]]), val_loader=loader(xtr[sets["val"]],
                                                                                          ytr[sets["val"]]),
        test_loader=loader(xte, yte), class_names=getattr(sp, "classes", None), mean=mean, std=std, ratio=ratio,
        ratios=ratios, calibrations=cals, layer=layer, am_classes=am_classes, top_k=top_k, am_steps=am_steps,
        tp=tp, seed=seed, progress=progress)
    res["meta"] = {"params": {**params, "batch_size": batch_size}, "key": results.path(key, where).name,
                   "run": run_dir.name, "profile": cfg["profile"], "dataset": cfg["dataset"], "seed": cfg.get("seed"),
                   "width": cfg["width"], **res["meta"], "map_images": int(len(sets["maps"])),
                   "val_images": int(len(sets["val"])), "test_images": int(len(yte)), "val_unseen": sets["val_unseen"],
                   "triage_version": __version__, "git_hash": ex._git_hash(), "device": str(device),
                   "data_note": getattr(sp, "note", "")}

    def write(folder: Path) -> None:
        for t in _BASE_TABLES:
            res[t].to_csv(folder / f"{t}.csv", index=False, float_format="%.6g")
        res["maps"].to_csv(folder / "maps.csv")
        if res.get("am") is not None:
            am = res["am"]
            np.savez_compressed(folder / "am.npz", images=am["images"].numpy().astype(np.float32),
                                start=am["start"].numpy(), final=am["final"].numpy(), titles=np.array(am["titles"]))

    results.put(key, write, where, res["meta"])
    res["meta"] = {**res["meta"], "source": "computed now"}
    return res


def _read_base(entry: Entry) -> dict:
    res = read_analysis(entry)
    res.pop("path")
    res["am"] = None
    if (entry.path / "am.npz").is_file():
        with np.load(entry.path / "am.npz") as z:
            res["am"] = {"images": torch.from_numpy(z["images"]), "start": torch.from_numpy(z["start"]),
                         "final": torch.from_numpy(z["final"]), "titles": [str(t) for t in z["titles"]]}
    return res


def find_base(profile: str, dataset: str = "cifar10", seed: int = 0, *, store=None,
              results_dir="results/critical") -> Path:
    """The base run folder of a profile: the run store's (or its export), else the one whose
    critical-path results are stored under ``results_dir`` (a book built without weights).

    Raises:
        FileNotFoundError: neither (the message lists what is stored).
    """
    store = store or ex.RunStore()
    cfg = None
    if profile in ex.PROFILES:
        cfg = ex.make_config(dataset, profile=profile, seed=seed)
        found = store.find(cfg) if hasattr(store, "find") else (store.path(cfg) if store.is_done(cfg) else None)
        if found is not None:
            return Path(found)
    results = ResultStore(results_dir)
    runs = sorted({e.spec["run"] for e in results.entries((profile, dataset, "*"), analysis="critical_eval")
                   if e.meta.get("seed", seed) == seed})
    if len(runs) == 1:
        return Path(store.root) / profile / dataset / runs[0]
    where = f"{Path(results_dir, profile, dataset)}"
    raise FileNotFoundError(
        f"no trained {profile} base of {dataset} (seed {seed}) in the run store"
        + (f" ({store.path(cfg)})" if cfg is not None else "")
        + (f", and several with stored results under {where}: {', '.join(runs)}; pass run_dir" if runs else
           f", and no stored critical-path results under {where}"))
