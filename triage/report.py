"""Results of the Deep Net Triage grid for the book: export stored runs, and read them back.

One reason to change: the format of the committed result files. ``export`` turns a run
store (``runs/<profile>/<dataset>/...``, weights and all, never committed) into a few
small files that are committed under ``results/triage/<profile>/``::

    runs.csv               one row per network: its config and summary (triage.grid.results_table)
    metrics.csv            every network's epochs (train/test loss and accuracy, lr, wall and CPU seconds)
    fig3_activations.npz   block-1 activation maps of Base, FM-STN, TM-STN and TM-RW (paper Fig. 3)
                           for one fixed test image, computed from the weights at export time
    provenance.json        git hash, triage version, machine, data sets, seeds, networks present

``load`` reads them back (``Results``) and only reads: the book never retrains 124
networks at build time. Training is ``triage grid``; :func:`triage.grid.run_smoke_grid` trains the
small smoke grid of MNIST explicitly (then ``export("smoke")``), for a machine without
stored results of the profile it wants.

The tables the book derives from the runs (margins, regime gaps, convergence, cost,
setting) are :mod:`triage.tables` (their names stay importable from here); the paper's
claims are tested on ``Results.runs`` by :mod:`triage.claims`.

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

from .tables import (PAPER_RESOLUTION, PAPER_TEST_IMAGES, PAPER_TRAIN_IMAGES, PILOT_CHILDREN,  # noqa: F401
                     activation_similarity, child_lr_pilot, cka_bases,
                     convergence_diffs, grid_cost, margins, regime_gaps, setting_caveat, setting_differences,
                     timings)
from .grid import run_smoke_grid  # noqa: F401  (trains; re-exported here for older code)
from .vocabulary import GRID_SIZE, SCHEMES, is_base  # the paper's Fig. 2 order; re-exported here
from .store import default_profile, default_results_root, stored_profiles  # noqa: F401  (re-exported)

__all__ = ["RESULTS_FORMAT", "GRID_SIZE", "SCHEMES", "FIG3_MODELS",
           "default_results_root", "default_profile", "stored_profiles", "export", "load", "Results",
           "run_smoke_grid", "grid_runs", "model_runs", "grid_size", "stored_summary", "add_commands", "main",
           # triage.tables, re-exported for older code
           "margins", "regime_gaps", "convergence_diffs", "activation_similarity", "setting_differences",
           "cka_bases", "child_lr_pilot", "grid_cost",
           "setting_caveat", "timings"]

RESULTS_FORMAT = 2        # bump when the exported files change incompatibly
# Format 2 adds validation/selection columns, stop reasons, the control, per-run exports,
# block-1 CKA and cka_bases.csv; every format-1 file is still read (its columns are a subset).
READABLE_FORMATS = (1, 2)
# The paper's Fig. 3 models: the base, and block 1 compressed (the paper compresses "Layer 1").
FIG3_MODELS = (("Base", 0, None, None), ("FM-STN", 1, "stn", "frozen"),
               ("TM-STN", 1, "stn", "thawed"), ("TM-RW", 1, "random", "thawed"))


def grid_size(profile: str) -> int:
    """Networks per data set and seed in ``profile``'s grid: 31, plus the control where it has one."""
    from .experiments import PROFILES
    return GRID_SIZE + (1 if profile in PROFILES and PROFILES[profile].control else 0)


_KEY_COLUMNS = ("dataset", "profile", "seed", "block", "init", "regime", "scheme", "name", "key")


def _repo() -> Path:
    return Path(__file__).resolve().parents[1]




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
        # the control is a block-0 row without init or regime too: "Base" is the base
        part = runs[(runs["dataset"] == dataset) & (is_base(runs) | (runs["block"] > 0))]
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
    def same(a, b):
        # float maps recomputed on another CPU differ in the last bits (its kernels sum in
        # another order); that is not a change of the result, and rewriting the file would be
        if a.dtype.kind == "f" and b.dtype.kind == "f" and a.shape == b.shape:
            return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6))
        return np.array_equal(a, b)
    with np.load(path, allow_pickle=False) as old:
        return set(old.files) == set(arrays) and all(same(old[k], arrays[k]) for k in arrays)


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
    from .experiments import PROFILES, atomic_write_json, default_runs_root

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    runs_root = Path(runs_root) if runs_root is not None else default_runs_root()
    out_dir = (Path(out) if out is not None else default_results_root()) / profile
    table, dropped, partial = _export_table(profile, runs_root, out_dir, datasets, grid_only, complete_only)
    out_dir.mkdir(parents=True, exist_ok=True)
    table, runs, changed = _write_tables(table, out_dir, data_root)
    fig, fig_changed = _write_fig3(table, out_dir, fig3, image_index, n_filters, data_root, log)
    prov = _provenance(profile, table, runs, fig, dropped, partial)
    old = {}
    if (out_dir / "provenance.json").is_file():
        try:
            old = json.loads((out_dir / "provenance.json").read_text())
        except ValueError:
            old = {}
    if changed or fig_changed or {k: v for k, v in old.items() if k != "exported"} != prov:
        prov["exported"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(out_dir / "provenance.json", prov)
    cov = ", ".join(f"{c['dataset']} seed {c['seed']}: {c['networks']}/{grid_size(profile)}"
                    for c in prov["coverage"])
    log(f"exported {len(runs)} {profile} network(s) ({cov})"
        f"{', Fig. 3 activations' if fig is not None else ''} -> {out_dir}")
    return out_dir


def _export_table(profile: str, runs_root: Path, out_dir: Path, datasets, grid_only: bool, complete_only: bool):
    """The finished runs an export writes: (table, networks dropped as not in the grid, partial
    grids left out)."""
    import pandas as pd
    from .grid import results_table
    # runs exported as they finished (results/<profile>/runs/, committed; a fresh clone has
    # only these) and runs still only in the run store; the run store's copy wins
    local = results_table(runs_root, profile)
    exported = results_table(out_dir.parent, profile, exported=True)
    table = pd.concat([t for t in (local, exported[~exported["key"].isin(local["key"])]) if len(t)],
                      ignore_index=True) if len(local) + len(exported) else local
    if len(table):
        # one order whichever store a run came from, so that exporting the same runs on another
        # machine (where runs/ is gone) rewrites no line of runs.csv or metrics.csv
        order = table.assign(_c=table["control"].fillna(False).astype(bool), _i=table["init"].fillna(""),
                             _r=table["regime"].fillna(""))
        table = table.loc[order.sort_values(["dataset", "seed", "block", "_c", "_i", "_r", "key"],
                                            kind="stable").index].reset_index(drop=True)
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
    return table, dropped, partial


def _write_tables(table, out_dir: Path, data_root):
    """runs.csv, metrics.csv (every epoch of every run) and cka_bases.csv: (table with its
    ``run`` and ``notebook_seconds`` columns, the runs as written, whether a file changed)."""
    import pandas as pd
    from .plots import load_metrics
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
        # six decimals: past them the value is the CPU's summation order, not the networks
        cka["cka_block1"] = cka["cka_block1"].round(6)
        changed |= _write_if_changed(out_dir / "cka_bases.csv", cka.to_csv(index=False).encode())
    return table, runs, changed


def _write_fig3(table, out_dir: Path, fig3: bool, image_index: int, n_filters: int, data_root, log):
    """fig3_activations.npz: (the arrays exported, or None; whether the file changed)."""
    import numpy as np
    path = out_dir / "fig3_activations.npz"
    if not fig3:
        if not path.is_file():
            return None, False
        with np.load(path, allow_pickle=False) as z:   # --no-fig3 keeps what an earlier export wrote
            return {k: z[k] for k in z.files}, False
    fig, why = _fig3_arrays(table, image_index, n_filters, data_root)
    if fig is not None and not _same_npz(path, fig):
        tmp = out_dir / ".fig3_activations.tmp.npz"
        np.savez_compressed(tmp, **fig)
        os.replace(tmp, path)
        return fig, True
    if fig is None:
        log(f"fig3: no activations exported: {why}")
        if path.exists():  # a stale file would contradict provenance.json
            path.unlink()
            return None, True
    return fig, False


def _provenance(profile: str, table, runs, fig, dropped: int, partial: list[str]) -> dict:
    """provenance.json's content (without its ``exported`` time stamp)."""
    from ._version import __version__
    from .experiments import PROFILES, _git_hash
    coverage = (runs.groupby(["dataset", "seed"]).size().rename("networks").reset_index()
                .to_dict(orient="records"))
    return {
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


def load(profile: str | None = None, root=None) -> Results:
    """Read the exported results of a profile (see :func:`export`); never trains.

    A fresh clone holds the ``campaign``, ``cpu`` and ``wide`` results (``default_profile``
    picks ``campaign``). For a profile with nothing stored (e.g. ``smoke``, which git
    ignores), train it first: ``run_smoke_grid()`` then ``export("smoke", datasets=["mnist"])``
    (:func:`triage.grid.run_smoke_grid`; a few minutes on 2 CPU cores), or ``python -m triage grid``
    and ``python -m triage export``.

    Args:
        profile: campaign | cpu | smoke | paper | ...; None: :func:`default_profile`.
        root: results folder (default :func:`default_results_root`).

    Raises:
        ValueError: unknown profile, or nothing stored for it (the message says how to make it).

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
        how = ("`triage.report.run_smoke_grid()` and `triage.report.export('smoke', datasets=['mnist'])`, or "
               if profile == "smoke" else "")
        raise ValueError(f"no exported {profile} results in {folder}; train and export them first: {how}"
                         f"`python -m triage grid --dataset DATASET --profile {profile}` and "
                         f"`python -m triage export --profile {profile}`")
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
