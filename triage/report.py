"""Results of the Deep Net Triage grid for the book: export and load.

The book must not retrain 124 networks at build time. ``export`` turns a run store
(``runs/<profile>/<dataset>/...``, weights and all, never committed) into a few small
files that are committed under ``results/triage/<profile>/``::

    runs.csv               one row per network: its config and summary (triage.grid.results_table)
    metrics.csv            every network's epochs (train/test loss and accuracy, lr, seconds)
    fig3_activations.npz   block-1 activation maps of Base, FM-STN, TM-STN and TM-RW (paper Fig. 3)
                           for one fixed test image, computed from the weights at export time
    provenance.json        git hash, triage version, machine, data sets, seeds, networks present

``load`` reads them back (``Results``). With nothing stored for the ``smoke``
profile (a fresh clone), ``load`` trains the smoke grid of MNIST (31 small networks,
``triage.run`` directly, no notebooks) into the run store and exports it first.

The paper's claims are tested on ``Results.runs`` by :mod:`triage.claims`.

Example:
    >>> from triage import claims, report
    >>> report.export("cpu")                                # doctest: +SKIP
    >>> res = report.load("cpu")                            # doctest: +SKIP
    >>> claims.check_claims(res.runs).counts                # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .vocabulary import SCHEMES  # the paper's Fig. 2 order; re-exported here

__all__ = ["RESULTS_FORMAT", "GRID_SIZE", "SCHEMES", "FIG3_MODELS",
           "default_results_root", "default_profile", "stored_profiles", "export", "load", "Results",
           "run_smoke_grid", "grid_runs", "model_runs", "margins", "regime_gaps", "convergence_diffs",
           "activation_similarity", "setting_differences", "cka_bases", "grid_size", "child_lr_pilot", "convergence_audit", "setting_caveat", "timings",
           "add_commands", "main"]

RESULTS_FORMAT = 2        # bump when the exported files change incompatibly
# Format 2 adds validation/selection columns, stop reasons, the control, per-run exports,
# block-1 CKA and cka_bases.csv; every format-1 file is still read (its columns are a subset).
READABLE_FORMATS = (1, 2)
GRID_SIZE = 31            # networks per data set and seed: 1 base + 5 blocks x 3 inits x 2 regimes
# The child-lr pilot (tools/gpu_campaign.py): one child per block, all three initialisers, both regimes.
PILOT_CHILDREN = ((1, "random", "thawed"), (3, "mean", "thawed"), (5, "stn", "thawed"),
                  (2, "random", "frozen"), (4, "mean", "frozen"))


def grid_size(profile: str) -> int:
    """Networks per data set and seed in ``profile``'s grid: 31, plus the control where it has one."""
    from .experiments import PROFILES
    return GRID_SIZE + (1 if profile in PROFILES and PROFILES[profile].control else 0)
# The paper's Fig. 3 models: the base, and block 1 compressed (the paper compresses "Layer 1").
FIG3_MODELS = (("Base", 0, None, None), ("FM-STN", 1, "stn", "frozen"),
               ("TM-STN", 1, "stn", "thawed"), ("TM-RW", 1, "random", "thawed"))
# Paper Sec. 3.3-3.4 and Tables 1-2: the setting our profiles scale down.
PAPER_TRAIN_IMAGES = {"mnist": 60000, "cifar10": 50000, "cifar100": 50000, "stanford_dogs": 12000}
PAPER_TEST_IMAGES = {"mnist": 10000, "cifar10": 10000, "cifar100": 10000, "stanford_dogs": 8500}
PAPER_RESOLUTION = 224    # "We upsampled the inputs to (224,224,3)"

_KEY_COLUMNS = ("dataset", "profile", "seed", "block", "init", "regime", "scheme", "name", "key")


def _repo() -> Path:
    return Path(__file__).resolve().parents[1]


def default_results_root() -> Path:
    """``$TRIAGE_RESULTS/triage`` if set, else ``<checkout>/results/triage``."""
    from .experiments import default_results_root as root
    return root()


def stored_profiles(root=None) -> list[str]:
    """Profiles with exported results under ``root``, in the order smoke, cpu, paper."""
    from .experiments import PROFILES
    root = Path(root) if root is not None else default_results_root()
    return [p for p in PROFILES if (root / p / "runs.csv").is_file()]


def default_profile(root=None) -> str:
    """The book's default: ``campaign`` (the converged reproduction) when its results are
    stored, else ``cpu``, else ``smoke`` (recomputed)."""
    stored = stored_profiles(root)
    return next((p for p in ("campaign", "cpu") if p in stored), "smoke")


# ----------------------------------------------------------------------------- export

def grid_runs(table, profile: str):
    """Keep the rows of a results table that belong to the default grid of ``profile``.

    A store may hold other runs too (other epochs, widths, experiments of the
    analyses); the book reports the grid of ``triage grid --profile PROFILE``, whose
    configs are those of ``triage.grid.expand_grid`` for every data set and seed present.

    Returns:
        (kept rows, number of rows dropped)
    """
    from .grid import expand_grid
    if table.empty:
        return table, 0
    keys = set()
    for (dataset, seed), _ in table.groupby(["dataset", "seed"]):
        keys |= {c.key() for c in expand_grid(dataset, profile, [int(seed)])}
    keep = table["key"].isin(keys) & (table["profile"] == profile)
    return table[keep].reset_index(drop=True), int((~keep).sum())


def model_runs(profile: str, model: str, dataset: str | None = None, root=None, runs_root=None, **overrides):
    """The stored grid of another architecture (``triage grid --set model=resnet8``; beyond the paper).

    ``export`` keeps the VGG16-BN grid only; a ResNet grid is read from its per-run exports
    (``results/triage/<profile>/runs/``) and, when given, a run store (its copy wins). Kept:
    the configs of ``expand_grid(..., model=model, **overrides)`` (any subset of its schemes,
    e.g. TM only; ``overrides`` as the grid's ``--set``, e.g. ``width=1.0``). Names lose their model prefix (``resnet8-b2-mean-thawed`` -> ``b2-mean-thawed``,
    ``resnet8-control`` -> ``control``), so the Fig. 2 plot and :mod:`triage.claims` read the
    table as they read VGG's.

    Returns:
        the runs table (empty, with the usual columns, when nothing is stored).

    Example:
        >>> runs = model_runs("campaign", "resnet8", "cifar10", width=1.0)   # doctest: +SKIP
        >>> claims.check_claims(runs).verdicts                       # doctest: +SKIP
    """
    import pandas as pd
    from .grid import expand_grid, results_table
    root = Path(root) if root is not None else default_results_root()
    tables = [results_table(runs_root, profile, dataset)] if runs_root is not None else []
    tables.append(results_table(root, profile, dataset, exported=True))
    table = pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) \
        else tables[-1]
    if table.empty:
        return table
    table = table[table["model"] == model].drop_duplicates("key").reset_index(drop=True)
    keys = set()
    for (ds, seed), _ in table.groupby(["dataset", "seed"]):
        keys |= {c.key() for c in expand_grid(ds, profile, [int(seed)], model=model, **overrides)}
    table = table[table["key"].isin(keys)].reset_index(drop=True)
    table["name"] = table["name"].str.removeprefix(f"{model}-")
    return table


def _notebook_seconds(path) -> float:
    """papermill's wall time of an executed run notebook (NaN without one)."""
    if not path:
        return float("nan")
    try:
        meta = json.loads(Path(path).read_text()).get("metadata", {}).get("papermill", {})
        return float(meta.get("duration") or "nan")
    except (OSError, ValueError, TypeError):
        return float("nan")


def _fig3_arrays(runs, image_index: int, n_filters: int, data_root) -> tuple[dict | None, str]:
    """Block-1 activations of the four Fig. 3 models of one data set and seed.

    CIFAR-10 first (the paper's choice), else the first data set that has all four.

    Returns:
        (arrays, "") or (None, why not).
    """
    import numpy as np
    from .data import DataError, load_split, spec
    from .experiments import load_model
    from .plots import fixed_test_image
    from .similarity import block1_activations
    order = ["cifar10"] + [d for d in dict.fromkeys(runs["dataset"]) if d != "cifar10"]
    for dataset in [d for d in order if d in set(runs["dataset"])]:
        part = runs[runs["dataset"] == dataset]
        for seed in sorted(part["seed"].unique()):
            rows = []
            for label, block, init, regime in FIG3_MODELS:
                sel = part[(part["seed"] == seed) & (part["block"] == block)
                           & (part["init"].fillna("") == (init or ""))
                           & (part["regime"].fillna("") == (regime or ""))]
                if sel.empty:
                    break
                rows.append((label, sel.iloc[0]))
            if len(rows) < len(FIG3_MODELS):
                continue
            try:
                x, raw = fixed_test_image(dataset, image_index, data_root, int(rows[0][1]["resolution"]))
                _, y = load_split(dataset, "test", data_root)
            except DataError as e:
                return None, f"the {dataset} test images are not available ({e})"
            acts = []
            for _, row in rows:
                stored = Path(row["run_dir"]) / "block1.npz"
                if stored.is_file() and image_index == 0:
                    # computed when the run finished (children's weights are not exported)
                    with np.load(stored) as z:
                        acts.append(z["maps"].astype(np.float32)[:n_filters])
                    continue
                model = load_model(row["run_dir"], "cpu")
                acts.append(block1_activations(model, x)[0].float()[:n_filters].numpy())
            n = min(a.shape[0] for a in acts)
            return {
                "activations": np.stack([a[:n] for a in acts]).astype(np.float16),
                "image": raw.numpy().astype(np.uint8),
                "labels": np.array([r[0] for r in rows]),
                "keys": np.array([str(r[1]["key"]) for r in rows]),
                "dataset": np.array(dataset), "seed": np.array(int(seed)),
                "block": np.array(1), "image_index": np.array(int(image_index)),
                "image_class": np.array(spec(dataset).classes[int(y[image_index])]),
            }, ""
    return None, "the Base, FM-STN, TM-STN and TM-RW networks of block 1 are not all present"


def cka_bases(runs, data_root=None):
    """Linear CKA of block 1 between the bases of every two seeds of a data set.

    The reference for a child's ``cka_block1``: "as similar to the base as a base trained
    from another seed". Needs the bases' weights (committed for format-2 profiles) and the
    test images; None when no data set has two bases with weights.

    Returns:
        DataFrame with dataset, seed_a, seed_b, cka_block1.
    """
    import itertools
    import pandas as pd
    from .data import DataError, get_loaders
    from .experiments import load_model
    from .similarity import CKA_IMAGES, block1_features, linear_cka
    rows = []
    bases = runs[(runs["block"] == 0) & (runs["name"] == "base")]
    for dataset, part in bases.groupby("dataset", sort=False):
        part = part[[(Path(d) / "weights.pt").is_file() for d in part["run_dir"]]]
        if len(part) < 2:
            continue
        try:
            _, test, _ = get_loaders(dataset, root=data_root, batch_size=CKA_IMAGES)
        except DataError:
            continue
        feats = {int(r.seed): block1_features(load_model(r.run_dir, "cpu"), test).flatten(1).numpy()
                 for r in part.itertuples()}
        for a, b in itertools.combinations(sorted(feats), 2):
            rows.append({"dataset": dataset, "seed_a": a, "seed_b": b, "cka_block1": linear_cka(feats[a], feats[b])})
    return pd.DataFrame(rows) if rows else None


def child_lr_pilot(root=None, profile: str = "campaign"):
    """The pre-registered child-lr pilot of ``tools/gpu_campaign.py`` as stored.

    Returns:
        (table, decision): one row per pilot child with its best validation accuracy under
        each reading (``initial``: a fresh SGD at the profile's lr; ``continue``: the base's
        final lr), and the stored decision dict (choice, means, margin, why); (None, None)
        when no pilot is stored.
    """
    import pandas as pd
    root = Path(root) if root is not None else default_results_root()
    path = root / profile / "child_lr_pilot.json"
    if not path.is_file():
        return None, None
    dec = json.loads(path.read_text())
    n = len(dec["acc"]["initial"])
    names = [f"b{b}-{i}-{r}" for b, i, r in PILOT_CHILDREN][:n]
    table = pd.DataFrame({"initial": dec["acc"]["initial"], "continue": dec["acc"]["continue"][:n]},
                         index=pd.Index(names, name="pilot child (CIFAR-10, seed 0)"))
    table["initial - continue (pt)"] = 100 * (table["initial"] - table["continue"])
    return table, dec


def grid_cost(table):
    """Measured cost of one grid (base excluded: 15 FM + 15 TM children and the control), per device.

    From the stored runs' ``train_seconds`` (STN hint epochs included): the median per kind
    of network, and the hours one grid takes in one process, ``15 x FM + 15 x TM +
    control``. Audit runs, pilot runs (``child_lr`` other than the profile's) and
    compress-to-failure steps are left out.

    Args:
        table: runs with ``device``, ``train_seconds`` and config columns (e.g.
            ``triage.grid.results_table(results_root, "campaign", exported=True)``).

    Returns:
        DataFrame indexed by device: n and median seconds of FM children, TM children and
        controls, and ``grid_hours``. Empty when nothing is stored.
    """
    import pandas as pd
    from .experiments import PROFILES
    cols = ["n_fm", "fm_s", "n_tm", "tm_s", "n_control", "control_s", "grid_hours"]
    if table.empty or "device" not in table.columns:
        return pd.DataFrame(columns=cols)
    t = table[table["block"] > 0] if "extra_blocks" not in table.columns else \
        table[(table["block"] > 0) & table["extra_blocks"].isna()]
    t = pd.concat([t, table[(table["block"] == 0) & (table["name"] == "control")]])
    own = t["profile"].map(lambda p: PROFILES[p].child_lr if p in PROFILES else None)
    t = t[t["child_lr"] == own]
    rows = {}
    for device, part in t.groupby("device"):
        fm = part.loc[part["regime"] == "frozen", "train_seconds"]
        tm = part.loc[part["regime"] == "thawed", "train_seconds"]
        ctl = part.loc[part["name"] == "control", "train_seconds"]
        med = lambda x: float(x.median()) if len(x) else float("nan")   # noqa: E731
        c = med(ctl) if len(ctl) else med(tm)   # the control trains like a TM child
        rows[device] = {"n_fm": len(fm), "fm_s": med(fm), "n_tm": len(tm), "tm_s": med(tm),
                        "n_control": len(ctl), "control_s": med(ctl),
                        "grid_hours": (15 * med(fm) + 15 * med(tm) + c) / 3600}
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols).rename_axis("device")


def convergence_audit(table, margin: float = 0.005):
    """Did the bases converge? Each base against the same base trained twice as long.

    An audit run is a base config of the same data set, profile and seed with
    ``stopping="fixed"`` (it trains its whole ``epochs``, about twice what the base
    trained); issue 12 asks that it gain less than ``margin`` (0.5 points) of test accuracy
    at the best validation epoch.

    Two gains are reported. ``gain``: the audit run's accuracy minus the base's. When the
    two ran on different devices (a GPU base, a CPU audit) their trajectories differ from
    the first step, so this gain mixes training length with device noise. ``gain_within``
    compares like with like: inside the audit run, the test accuracy at the best validation
    epoch of all its epochs minus that of its first ``base_epochs`` epochs (where the base
    stopped; the lr schedule is the same up to there). The verdict uses ``gain_within`` when
    the audit's per-epoch metrics are at hand (``run_dir``), else ``gain``.

    Args:
        table: runs of a profile with format-2 columns, audit runs included (e.g.
            ``triage.grid.results_table(results_root, profile, exported=True)``; ``runs.csv``
            leaves audit runs out as they are not grid networks).
        margin: the largest gain that still counts as converged.

    Returns:
        DataFrame: dataset, seed, base and audit epochs and accuracies, gain, gain_within,
        converged, devices (base / audit).
    """
    import pandas as pd
    cols = ["dataset", "seed", "base_epochs", "base_acc", "audit_epochs", "audit_acc", "gain", "gain_within",
            "converged", "devices"]
    if table.empty or "stopping" not in table.columns:
        return pd.DataFrame(columns=cols)
    b0 = table[(table["block"] == 0) & (table["name"] == "base")]
    rows = []
    for (ds, seed), part in b0.groupby(["dataset", "seed"]):
        base = part[part["stopping"] == "plateau"]
        audit = part[part["stopping"] == "fixed"]
        if base.empty or audit.empty:
            continue
        b, a = base.iloc[0], audit.sort_values("epochs").iloc[-1]
        gain = float(a["test_acc_at_best_val"] - b["test_acc_at_best_val"])
        within = _gain_within(a.get("run_dir"), int(b["epochs_trained"]))
        rows.append({"dataset": ds, "seed": int(seed), "base_epochs": int(b["epochs_trained"]),
                     "base_acc": float(b["test_acc_at_best_val"]), "audit_epochs": int(a["epochs_trained"]),
                     "audit_acc": float(a["test_acc_at_best_val"]), "gain": gain, "gain_within": within,
                     "converged": (gain if within != within else within) < margin,
                     "devices": f"{b.get('device') or '?'} / {a.get('device') or '?'}"})
    return pd.DataFrame(rows, columns=cols)


def convergence_audit_text(audit, margin: float = 0.005) -> str:
    """One paragraph on :func:`convergence_audit`'s table, for the results chapter."""
    if audit is None or audit.empty:
        return "No audit run is stored for this profile yet."
    parts = []
    for r in audit.itertuples():
        within = ("n/a" if r.gain_within != r.gain_within else f"{100 * r.gain_within:+.2f}")
        parts.append(f"{r.dataset} seed {r.seed}: {r.audit_epochs} epochs against {r.base_epochs}, "
                     f"{100 * r.gain:+.2f} pt against the base ({r.devices}), {within} pt within the audit run")
    ok = audit["converged"].all()
    verdict = (f"every audited base is converged by the issue's criterion (a gain below {100 * margin:.1f} pt)"
               if ok else "at least one audited base is **not** converged: " +
               ", ".join(audit.loc[~audit["converged"], "dataset"]))
    return (f"Audited: {'; '.join(parts)}. So {verdict}. The *within* figure is the one the verdict reads: "
            "it compares the long run with its own first epochs, on one device.")


def _gain_within(run_dir, first: int) -> float:
    """Test accuracy at the best validation epoch of all epochs minus of the first ``first`` epochs."""
    import pandas as pd
    path = Path(run_dir) / "metrics.csv" if isinstance(run_dir, str) and run_dir else None
    if path is None or not path.is_file():
        return float("nan")
    m = pd.read_csv(path)
    if m["val_acc"].isna().all() or len(m) <= first:
        return float("nan")
    at_best = lambda part: float(part.loc[part["val_acc"].idxmax(), "test_acc"])   # noqa: E731
    return at_best(m) - at_best(m.iloc[:first])


def _fig3_meta(fig: dict | None) -> dict | None:
    if fig is None:
        return None
    return {"dataset": str(fig["dataset"]), "seed": int(fig["seed"]),
            "models": [str(x) for x in fig["labels"]], "image_index": int(fig["image_index"]),
            "filters": int(fig["activations"].shape[1])}


def _write_if_changed(path: Path, data: bytes) -> bool:
    from .experiments import atomic_write_bytes
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def _same_npz(path: Path, arrays: dict) -> bool:
    import numpy as np
    if not path.is_file():
        return False
    with np.load(path, allow_pickle=False) as old:
        return set(old.files) == set(arrays) and all(np.array_equal(old[k], arrays[k]) for k in arrays)


def _machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.system(),
            "python": platform.python_version()}


def export(profile: str, runs_root=None, out=None, *, datasets=None, grid_only: bool = True,
           complete_only: bool = False, fig3: bool = True, image_index: int = 0, n_filters: int = 10,
           data_root=None, log=print) -> Path:
    """Write the small, committable result files of a profile's finished runs.

    Idempotent: files whose content did not change are left untouched (so a
    re-export of the same runs gives no git diff), and a partial grid is exported
    as it is (``provenance.json`` says how many of the 31 networks are present).

    Args:
        profile: smoke | cpu | paper.
        runs_root: the run store (default ``$TRIAGE_RUNS`` or ``<checkout>/runs``).
        out: results folder (default :func:`default_results_root`); files go to ``out/profile/``.
        datasets: keep only these data sets (default: all found).
        grid_only: keep only the configs of ``triage grid --profile PROFILE`` (see :func:`grid_runs`).
        complete_only: keep only the data sets and seeds whose grid of 31 networks is complete
            (a grid still running elsewhere is left out instead of shown partial).
        fig3: also compute the Fig. 3 activations (needs the runs' weights and the test images).
        image_index: the fixed test image of Fig. 3 (the grid's notebooks use 0 too).
        n_filters: filters kept per model (the paper shows the first ten).
        data_root: data folder for the Fig. 3 image.
        log: where one-line messages go.

    Returns:
        the folder written (``out/profile``).

    Raises:
        ValueError: unknown profile, or no finished run of it in the store.

    Example:
        >>> export("cpu")                       # doctest: +SKIP
        PosixPath('.../results/triage/cpu')
    """
    import pandas as pd
    from ._version import __version__
    from .experiments import PROFILES, _git_hash, atomic_write_json, default_runs_root
    from .grid import results_table
    from .plots import load_metrics

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    runs_root = Path(runs_root) if runs_root is not None else default_runs_root()
    out_dir = (Path(out) if out is not None else default_results_root()) / profile
    # runs exported as they finished (results/<profile>/runs/, committed; a fresh clone has
    # only these) and runs still only in the run store; the run store's copy wins
    local = results_table(runs_root, profile)
    exported = results_table(out_dir.parent, profile, exported=True)
    table = pd.concat([t for t in (local, exported[~exported["key"].isin(local["key"])]) if len(t)],
                      ignore_index=True) if len(local) + len(exported) else local
    if datasets is not None:
        datasets = [datasets] if isinstance(datasets, str) else list(datasets)
        table = table[table["dataset"].isin(datasets)].reset_index(drop=True)
    dropped, partial = 0, []
    if grid_only:
        table, dropped = grid_runs(table, profile)
    if complete_only and not table.empty:
        size = table.groupby(["dataset", "seed"])["key"].transform("nunique")
        full = grid_size(profile)
        partial = sorted({f"{d} seed {int(s)}" for d, s in table.loc[size < full, ["dataset", "seed"]]
                          .itertuples(index=False)})
        table = table[size >= full].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"no finished {profile}-profile run in {runs_root / profile}; run "
                         f"`python -m triage grid --dataset DATASET --profile {profile}` first")
    out_dir.mkdir(parents=True, exist_ok=True)

    table = table.copy()
    table["notebook_seconds"] = [_notebook_seconds(p) for p in table["notebook"]]
    table["run"] = [Path(d).name for d in table["run_dir"]]
    metrics = []
    for row in table.itertuples():
        m = load_metrics(row.run_dir)
        for i, k in enumerate(_KEY_COLUMNS):
            m.insert(i, k, getattr(row, k))
        metrics.append(m)
    metrics = pd.concat(metrics, ignore_index=True)
    runs = table.drop(columns=["run_dir", "notebook"])
    changed = _write_if_changed(out_dir / "runs.csv", runs.to_csv(index=False).encode())
    changed |= _write_if_changed(out_dir / "metrics.csv", metrics.to_csv(index=False).encode())
    cka = cka_bases(table, data_root)
    if cka is not None:
        changed |= _write_if_changed(out_dir / "cka_bases.csv", cka.to_csv(index=False).encode())

    import numpy as np
    path = out_dir / "fig3_activations.npz"
    fig = None
    if fig3:
        fig, why = _fig3_arrays(table, image_index, n_filters, data_root)
        if fig is not None and not _same_npz(path, fig):
            tmp = out_dir / ".fig3_activations.tmp.npz"
            np.savez_compressed(tmp, **fig)
            os.replace(tmp, path)
            changed = True
        elif fig is None:
            log(f"fig3: no activations exported: {why}")
            if path.exists():  # a stale file would contradict provenance.json
                path.unlink()
                changed = True
    elif path.is_file():  # --no-fig3 keeps what an earlier export wrote
        with np.load(path, allow_pickle=False) as z:
            fig = {k: z[k] for k in z.files}

    coverage = (runs.groupby(["dataset", "seed"]).size().rename("networks").reset_index()
                .to_dict(orient="records"))
    prov = {
        "results_format": RESULTS_FORMAT, "profile": profile,
        "profile_description": PROFILES[profile].description,
        "datasets": sorted(runs["dataset"].unique().tolist()),
        "seeds": sorted(int(s) for s in runs["seed"].unique()),
        "networks": int(len(runs)), "grid_size": grid_size(profile),
        "coverage": [{"dataset": c["dataset"], "seed": int(c["seed"]), "networks": int(c["networks"]),
                      "of": grid_size(profile)} for c in coverage],
        "runs_not_in_grid_dropped": dropped,
        "partial_grids_left_out": partial,
        "fig3": _fig3_meta(fig),
        "runs_git_hashes": sorted({_run_meta(d).get("git_hash", "unknown") for d in table["run_dir"]}),
        "runs_devices": sorted({_run_meta(d).get("device", "unknown") for d in table["run_dir"]}),
        # CPU numbers differ in the last bits between thread counts (recorded by runs since 0.1.0+).
        "runs_threads": sorted({str(_run_meta(d).get("threads", "unknown")) for d in table["run_dir"]}),
        "triage_version": __version__, "git_hash": _git_hash(), "machine": _machine(),
    }
    old = {}
    if (out_dir / "provenance.json").is_file():
        try:
            old = json.loads((out_dir / "provenance.json").read_text())
        except ValueError:
            old = {}
    if changed or {k: v for k, v in old.items() if k != "exported"} != prov:
        prov["exported"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(out_dir / "provenance.json", prov)
    cov = ", ".join(f"{c['dataset']} seed {c['seed']}: {c['networks']}/{grid_size(profile)}"
                    for c in prov["coverage"])
    log(f"exported {len(runs)} {profile} network(s) ({cov})"
        f"{', Fig. 3 activations' if fig is not None else ''} -> {out_dir}")
    return out_dir


def _run_meta(run_dir) -> dict:
    try:
        return json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------- load

@dataclass
class Results:
    """Exported results of one profile (see :func:`load`).

    Attributes:
        profile: smoke | cpu | paper.
        runs: one row per network (config + summary; ``runs.csv``).
        metrics: one row per network and epoch (``metrics.csv``).
        activations: the Fig. 3 arrays (``fig3_activations.npz``) or None.
        provenance: ``provenance.json``.
        path: the folder read.
    """
    profile: str
    runs: "pandas.DataFrame"
    metrics: "pandas.DataFrame"
    activations: dict | None = None
    provenance: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def datasets(self) -> list[str]:
        from .data import DATASETS
        present = set(self.runs["dataset"])
        return [d for d in DATASETS if d in present]

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.runs["seed"].unique())

    @property
    def tag(self) -> str:
        """``[profile: cpu; cifar10; seed 0]``, for figure titles.

        Stanford Dogs is named with its images (64x64 box crops, not the paper's photos).
        """
        s = self.seeds
        seeds = f"seed {s[0]}" if len(s) == 1 else f"seeds {', '.join(map(str, s))}"
        names = [d + (" (64x64 box crops)" if d == "stanford_dogs" else "") for d in self.datasets]
        return f"[profile: {self.profile}; {', '.join(names)}; {seeds}]"

    def coverage(self):
        """Networks present per data set and seed, of the grid's 31, with the missing ones' names."""
        import pandas as pd
        from .grid import expand_grid
        rows = []
        for (dataset, seed), part in self.runs.groupby(["dataset", "seed"]):
            names = [c.name for c in expand_grid(dataset, self.profile, [int(seed)])]
            missing = [n for n in names if n not in set(part["name"])]
            rows.append({"dataset": dataset, "seed": int(seed), "networks": len(part),
                         "of": grid_size(self.profile),
                         "missing": ", ".join(missing)})
        return pd.DataFrame(rows)

    def coverage_text(self) -> str:
        """One line: ``cifar10 seed 0: 31 of 31 networks`` (per data set and seed)."""
        return "; ".join(f"{r.dataset} seed {r.seed}: {r.networks} of {r.of} networks"
                         for r in self.coverage().itertuples())

    @property
    def complete(self) -> bool:
        return bool((self.coverage()["networks"] >= grid_size(self.profile)).all())


def _read(folder: Path, profile: str) -> Results:
    import numpy as np
    import pandas as pd
    runs = pd.read_csv(folder / "runs.csv")
    for col in ("init", "regime"):
        runs[col] = runs[col].astype(object).where(runs[col].notna(), None)
    metrics = pd.read_csv(folder / "metrics.csv")
    prov = json.loads((folder / "provenance.json").read_text()) if (folder / "provenance.json").is_file() else {}
    if prov.get("results_format", RESULTS_FORMAT) not in READABLE_FORMATS:
        raise ValueError(f"{folder} was exported in results format {prov.get('results_format')}, this "
                         f"triage reads {RESULTS_FORMAT}; re-export with `python -m triage export --profile {profile}`")
    acts = None
    if (folder / "fig3_activations.npz").is_file():
        with np.load(folder / "fig3_activations.npz", allow_pickle=False) as z:
            acts = {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files}
    return Results(profile, runs, metrics, acts, prov, folder)


def run_smoke_grid(dataset: str = "mnist", store=None, *, blocks=None, inits=None, regimes=None,
                   data_root=None, device: str = "auto", progress: bool = True) -> list[Path]:
    """Train a smoke-profile grid with ``triage.run`` directly (no notebooks); finished runs are reused.

    The book's fresh-clone path. Executing every network as a notebook
    (``triage grid``) costs a kernel start, imports and two figures per network on
    top of its training: measured here, a smoke child took 23 s through papermill
    against 13 s of training, so the 31-network grid is ~1.7x slower that way.

    Args:
        dataset: the data set (default MNIST, the fastest).
        store: RunStore or its root (default ``$TRIAGE_RUNS`` or ``<checkout>/runs``).
        blocks, inits, regimes: a slice of the grid (default: all, 31 networks).
        data_root, device: passed to ``triage.run``.
        progress: a text progress bar on stderr (one step per network).

    Returns:
        the run folders, base first.
    """
    from tqdm import tqdm  # the text bar: a notebook's widget bar would render as nothing offline
    from .experiments import RunStore, run
    from .grid import BLOCKS, expand_grid
    from .init import INITS
    from .train import REGIMES
    store = store if isinstance(store, RunStore) else RunStore(store) if store is not None else RunStore()
    cfgs = expand_grid(dataset, "smoke", [0], blocks or BLOCKS, inits or INITS, regimes or REGIMES)
    out = []
    for cfg in tqdm(cfgs, desc=f"smoke grid {dataset}", unit="net", disable=not progress,
                    file=sys.stderr):
        out.append(run(cfg, store, data_root=data_root, device=device, progress=False, log=lambda m: None))
    return out


def load(profile: str | None = None, root=None, *, runs_root=None, fallback: bool = True,
         fallback_dataset: str = "mnist", data_root=None, progress: bool = True) -> Results:
    """Read the exported results of a profile (see :func:`export`).

    With nothing stored for ``smoke`` (a fresh clone), the smoke grid of
    ``fallback_dataset`` is trained into the run store (:func:`run_smoke_grid`;
    ~31 small networks, a few minutes on 2 CPU cores; reused by the next call) and
    exported to ``root/smoke`` (ignored by git) first.

    Args:
        profile: smoke | cpu | paper; None: :func:`default_profile`.
        root: results folder (default :func:`default_results_root`).
        runs_root: run store for the smoke fallback (default ``$TRIAGE_RUNS`` or ``<checkout>/runs``).
        fallback: allow the smoke fallback.

    Raises:
        ValueError: unknown profile, or nothing stored for a cpu/paper profile.

    Example:
        >>> res = load("cpu")                  # doctest: +SKIP
        >>> res.tag
        '[profile: cpu; cifar10; seed 0]'
    """
    from .experiments import PROFILES
    root = Path(root) if root is not None else default_results_root()
    profile = profile or default_profile(root)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    folder = root / profile
    if not (folder / "runs.csv").is_file():
        if profile != "smoke" or not fallback:
            raise ValueError(f"no exported {profile} results in {folder}; run `python -m triage grid "
                             f"--dataset DATASET --profile {profile}` and `python -m triage export "
                             f"--profile {profile}`, or use profile='smoke'")
        run_smoke_grid(fallback_dataset, runs_root, data_root=data_root, progress=progress)
        export("smoke", runs_root, root, datasets=[fallback_dataset], data_root=data_root,
               log=lambda m: None)
    return _read(folder, profile)


def stored_summary(root=None):
    """One row per stored profile: what produced the numbers the book shows.

    Columns: profile, data sets, seeds, networks (of the grid's 31 per data set and
    seed), the machine, run devices and threads, the git hashes of the runs, and when
    the results were exported. Read from each profile's ``provenance.json``.
    """
    import pandas as pd
    root = Path(root) if root is not None else default_results_root()
    rows = []
    for profile in stored_profiles(root):
        res = _read(root / profile, profile)
        prov, m = res.provenance, res.provenance.get("machine", {})
        cov = res.coverage()
        rows.append({
            "profile": profile,
            "data sets": ", ".join(res.datasets),
            "seeds": ", ".join(map(str, res.seeds)),
            "networks": f"{len(res.runs)} of {grid_size(res.profile) * len(cov)}",
            "machine": f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores" if m else "?",
            "devices": ", ".join(prov.get("runs_devices", [])),
            "threads": ", ".join(prov.get("runs_threads", ["unknown"])),
            "git (runs)": ", ".join(h[:7] + ("-dirty" if h.endswith("-dirty") else "")
                                    for h in prov.get("runs_git_hashes", [])),
            "exported": prov.get("exported", "?")[:10],
        })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- tidy tables

def _bases(runs):
    b = runs[runs["block"] == 0][["dataset", "seed", "max_test_acc"]]
    return b.drop_duplicates(["dataset", "seed"]).rename(columns={"max_test_acc": "base_acc"})


def margins(runs):
    """Every compressed network with its accuracy relative to its own seed's base.

    Returns:
        DataFrame: dataset, seed, block, init, regime, scheme, acc (max test accuracy),
        base_acc, delta = acc - base_acc. Children whose base is missing are dropped.
    """
    kids = runs[runs["block"] > 0][["dataset", "seed", "block", "init", "regime", "scheme",
                                    "max_test_acc"]].rename(columns={"max_test_acc": "acc"})
    m = kids.merge(_bases(runs), on=["dataset", "seed"], how="inner")
    m["delta"] = m["acc"] - m["base_acc"]
    return m.reset_index(drop=True)


def regime_gaps(runs):
    """TM minus FM accuracy for each (data set, seed, block, init) that has both.

    Returns:
        DataFrame: dataset, seed, block, init, acc_fm, acc_tm, gap = acc_tm - acc_fm.
    """
    kids = runs[runs["block"] > 0]
    w = kids.pivot_table("max_test_acc", ["dataset", "seed", "block", "init"], "regime").reset_index()
    w.columns.name = None
    for r in ("frozen", "thawed"):
        if r not in w.columns:
            w[r] = float("nan")
    w = w.rename(columns={"frozen": "acc_fm", "thawed": "acc_tm"}).dropna(subset=["acc_fm", "acc_tm"])
    w["gap"] = w["acc_tm"] - w["acc_fm"]
    return w[["dataset", "seed", "block", "init", "acc_fm", "acc_tm", "gap"]].reset_index(drop=True)


def convergence_diffs(runs):
    """Epochs to 99% of max of STN against RW and MW of the same (data set, seed, block, regime).

    Returns:
        DataFrame: dataset, seed, block, regime, e_stn, e_other (mean of RW and MW, either
        alone when the other is missing), diff = e_stn - e_other (negative: STN faster).
    """
    kids = runs[runs["block"] > 0]
    w = kids.pivot_table("epochs_to_99pct", ["dataset", "seed", "block", "regime"], "init").reset_index()
    w.columns.name = None
    for i in ("random", "mean", "stn"):
        if i not in w.columns:
            w[i] = float("nan")
    w["e_stn"] = w["stn"]
    w["e_other"] = w[["random", "mean"]].mean(axis=1)  # NaN only when both are missing
    w = w.dropna(subset=["e_stn", "e_other"])
    w["diff"] = w["e_stn"] - w["e_other"]
    return w[["dataset", "seed", "block", "regime", "e_stn", "e_other", "diff"]].reset_index(drop=True)


def activation_similarity(acts: dict):
    """Pearson correlation of each model's block-1 maps with the base's, filter by filter (Fig. 3).

    The compressed conv of block 1 keeps the parent's output channels, and STN trains
    it to reproduce the parent's (pooled) block output, so filter i of an STN child is
    comparable with filter i of the base; an RW child starts from random weights, so
    its filter i has no reason to match (paper Sec. 4: "the STN networks have been
    forced to learn the same filter responses as the parent network").

    Args:
        acts: the Fig. 3 arrays (``Results.activations``).

    Returns:
        DataFrame: model, filter, r (NaN for a constant map).
    """
    import numpy as np
    import pandas as pd
    a = np.asarray(acts["activations"], dtype=np.float64)
    labels = [str(x) for x in acts["labels"]]
    base = a[labels.index("Base")]
    rows = []
    for m, label in enumerate(labels):
        if label == "Base":
            continue
        for f in range(a.shape[1]):
            x, y = base[f].ravel(), a[m, f].ravel()
            r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
            rows.append({"model": label, "filter": f, "r": r})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- setting

def setting_differences(runs):
    """Our setting against the paper's (Sec. 3.3-3.4, Tables 1-2), one row per data set and field.

    Returns:
        DataFrame: dataset, setting, ours, paper, same (bool).
    """
    import pandas as pd
    from .experiments import TABLE1, TABLE2
    rows = []
    for dataset, part in runs.groupby("dataset", sort=False):
        base = part[part["block"] == 0]
        kids = part[part["block"] > 0]

        def vals(frame, col):
            v = sorted({x for x in frame[col].dropna()}) if col in frame and len(frame) else []
            return ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) or "n/a"

        items = [
            ("width (channel multiplier)", vals(part, "width"), "1"),
            ("input resolution (px)", vals(part, "resolution"), str(PAPER_RESOLUTION)),
            ("training images", vals(part, "train_images"), str(PAPER_TRAIN_IMAGES.get(dataset, "n/a"))),
            ("test images", vals(part, "test_images"), str(PAPER_TEST_IMAGES.get(dataset, "n/a"))),
            ("base epochs", vals(base, "epochs"), str(TABLE1[dataset].base_epochs)),
            ("epochs after compression", vals(kids, "epochs"), str(TABLE2["comp_epochs"])),
            ("STN epochs", vals(kids, "stn_epochs"), str(TABLE2["stn_epochs"])),
            ("initial learning rate", vals(part, "lr"), f"{TABLE1[dataset].lr:g}"),
            ("batch size", vals(part, "batch_size"), "not stated"),
            ("seeds", str(part["seed"].nunique()), "not stated"),
        ]
        if dataset == "stanford_dogs":  # both our sources give box crops (triage.data)
            items.insert(0, ("images", "64x64 crops of the dog boxes", "full photographs"))
        for name, ours, paper in items:
            rows.append({"dataset": dataset, "setting": name, "ours": ours, "paper": paper,
                         "same": ours == paper})
    return pd.DataFrame(rows)


def setting_caveat(runs, dataset: str | None = None) -> str:
    """One short line naming where our setting differs from the paper's (for a verdict's caveat).

    Example:
        >>> setting_caveat(runs)                    # doctest: +SKIP
        'ours vs paper: width 0.25 vs 1; 32 vs 224 px; 5000 vs 50000 training images; ...'
    """
    d = setting_differences(runs if dataset is None else runs[runs["dataset"] == dataset])
    short = {"images": "{o} vs {p}", "width (channel multiplier)": "width {o} vs {p}", "input resolution (px)": "{o} vs {p} px",
             "training images": "{o} vs {p} training images", "test images": "{o} vs {p} test images",
             "initial learning rate": "lr {o} vs {p}"}
    parts = []
    for _, part in d.groupby("dataset", sort=False):
        v = part.set_index("setting")
        parts += [fmt.format(o=v.loc[k, "ours"], p=v.loc[k, "paper"]) for k, fmt in short.items()
                  if k in v.index and not v.loc[k, "same"]]
        ep = ["base epochs", "epochs after compression", "STN epochs"]
        if not v.loc[ep, "same"].all():
            parts.append("epochs base/compressed/STN " + "/".join(v.loc[ep, "ours"]) + " vs "
                         + "/".join(v.loc[ep, "paper"]))
    parts = list(dict.fromkeys(parts))
    return "ours vs paper: " + "; ".join(parts) if parts else "same setting as the paper"


def timings(runs):
    """Measured cost of the stored networks, per data set and seed.

    ``train_seconds`` is the sum of the epochs' wall time (training and the test
    evaluation of each epoch; not the STN initialisation), from ``summary.json``;
    ``notebook_seconds`` is papermill's wall time of the executed run notebook
    (training included only for networks trained inside the grid).

    Returns:
        DataFrame: dataset, seed, networks, base_s, child_median_s, child_mean_s, child_max_s,
        train_total_s, notebook_total_s, train_total_h, and grid_estimate_h: the base plus
        ``GRID_SIZE - 1`` children at the mean child's time (a full grid's training time).
    """
    import pandas as pd
    rows = []
    for (dataset, seed), part in runs.groupby(["dataset", "seed"]):
        kids = part[part["block"] > 0]
        base = part[part["block"] == 0]
        rows.append({
            "dataset": dataset, "seed": int(seed), "networks": len(part),
            "base_s": float(base["train_seconds"].sum()) if len(base) else float("nan"),
            "child_median_s": float(kids["train_seconds"].median()) if len(kids) else float("nan"),
            "child_mean_s": float(kids["train_seconds"].mean()) if len(kids) else float("nan"),
            "child_max_s": float(kids["train_seconds"].max()) if len(kids) else float("nan"),
            "train_total_s": float(part["train_seconds"].sum()),
            "notebook_total_s": float(part["notebook_seconds"].sum()) if "notebook_seconds" in part else float("nan"),
        })
    t = pd.DataFrame(rows)
    if len(t):
        t["train_total_h"] = t["train_total_s"] / 3600
        t["grid_estimate_h"] = (t["base_s"] + (GRID_SIZE - 1) * t["child_mean_s"]) / 3600
    return t


# ----------------------------------------------------------------------------- command line

def add_commands(subparsers) -> tuple[str, ...]:
    """Add ``export`` to ``triage``'s subparsers; returns its name."""
    p = subparsers.add_parser("export", help="write the small result files of a profile's runs "
                                             "(results/triage/<profile>/) for the book")
    p.add_argument("--profile", default="cpu", help="smoke | cpu | paper (default cpu)")
    p.add_argument("--dataset", nargs="+", default=None, metavar="NAME", help="default: all found")
    p.add_argument("--runs", default=None, help="runs folder (default: $TRIAGE_RUNS or ./runs)")
    p.add_argument("--out", default=None, help="results folder (default: <checkout>/results/triage)")
    p.add_argument("--all-runs", action="store_true",
                   help="also export runs that are not part of the profile's default grid")
    p.add_argument("--complete-only", action="store_true",
                   help="leave out data sets and seeds whose 31-network grid is not complete")
    p.add_argument("--no-fig3", action="store_true", help="skip the Fig. 3 activations")
    p.add_argument("--data-root", default=None)
    return ("export",)


def main(args) -> int:
    """Run ``triage export`` from parsed arguments; returns the exit code (2: bad input)."""
    from ._cli import guarded
    # export's ValueErrors (unknown profile, nothing stored, an old results format) are bad input
    return guarded(lambda: export(args.profile, args.runs, args.out, datasets=args.dataset,
                                  grid_only=not args.all_runs, complete_only=args.complete_only,
                                  fig3=not args.no_fig3, data_root=args.data_root,
                                  log=lambda m: print(m, file=sys.stderr, flush=True)) and None,
                   "rerun the same command (the export is rewritten as a whole)", errors=(ValueError,))
