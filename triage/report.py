"""Results of the Deep Net Triage grid for the book: export, load, and the paper's claims tested.

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

``claims`` tests the paper's four conclusions (Sec. 4-5) on a runs table; each
test is defined in its helper's docstring (``_claim_c1`` ... ``_claim_c4``).

Example:
    >>> from triage import report
    >>> report.export("cpu")                                # doctest: +SKIP
    >>> res = report.load("cpu")                            # doctest: +SKIP
    >>> report.claims(res.runs)[["claim", "dataset", "verdict"]]   # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RESULTS_FORMAT", "GRID_SIZE", "SCHEMES", "FIG3_MODELS", "CLAIMS", "VERDICTS",
           "default_results_root", "default_profile", "stored_profiles", "export", "load", "Results",
           "run_smoke_grid", "grid_runs", "margins", "regime_gaps", "convergence_diffs",
           "activation_similarity", "setting_differences", "setting_caveat", "timings", "claims",
           "explorer", "add_commands", "main"]

RESULTS_FORMAT = 1        # bump when the exported files change incompatibly
GRID_SIZE = 31            # networks per data set and seed: 1 base + 5 blocks x 3 inits x 2 regimes
SCHEMES = ("FM-RW", "FM-MW", "FM-STN", "TM-RW", "TM-MW", "TM-STN")  # the paper's Fig. 2 order
# The paper's Fig. 3 models: the base, and block 1 compressed (the paper compresses "Layer 1").
FIG3_MODELS = (("Base", 0, None, None), ("FM-STN", 1, "stn", "frozen"),
               ("TM-STN", 1, "stn", "thawed"), ("TM-RW", 1, "random", "thawed"))
VERDICTS = ("holds", "does not hold", "inconclusive")
CLAIMS = {
    "C1": "No block is more critical than another.",
    "C2": "FM models (only the compressed layer trains) are much worse than TM models (all layers train).",
    "C3": "TM models can exceed the base (the uncompressed parent).",
    "C4": "STN initialisation converges faster, but an STN model never exceeds the base.",
}
# Paper Sec. 3.3-3.4 and Tables 1-2: the setting our profiles scale down.
PAPER_TRAIN_IMAGES = {"mnist": 60000, "cifar10": 50000, "cifar100": 50000, "stanford_dogs": 12000}
PAPER_TEST_IMAGES = {"mnist": 10000, "cifar10": 10000, "cifar100": 10000, "stanford_dogs": 8500}
PAPER_RESOLUTION = 224    # "We upsampled the inputs to (224,224,3)"

_SHORT_INIT = {"random": "RW", "mean": "MW", "stn": "STN"}
_KEY_COLUMNS = ("dataset", "profile", "seed", "block", "init", "regime", "scheme", "name", "key")


def _repo() -> Path:
    return Path(__file__).resolve().parents[1]


def default_results_root() -> Path:
    """``$TRIAGE_RESULTS/triage`` if set, else ``<checkout>/results/triage``."""
    env = os.environ.get("TRIAGE_RESULTS")
    return Path(env) / "triage" if env else _repo() / "results" / "triage"


def stored_profiles(root=None) -> list[str]:
    """Profiles with exported results under ``root``, in the order smoke, cpu, paper."""
    from .experiments import PROFILES
    root = Path(root) if root is not None else default_results_root()
    return [p for p in PROFILES if (root / p / "runs.csv").is_file()]


def default_profile(root=None) -> str:
    """The book's default: ``cpu`` when its results are stored, else ``smoke`` (recomputed)."""
    return "cpu" if "cpu" in stored_profiles(root) else "smoke"


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
    from .plots import block1_activations, fixed_test_image
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
    from . import __version__
    from .experiments import PROFILES, _git_hash, atomic_write_json, default_runs_root
    from .grid import results_table
    from .plots import load_metrics

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    runs_root = Path(runs_root) if runs_root is not None else default_runs_root()
    out_dir = (Path(out) if out is not None else default_results_root()) / profile
    table = results_table(runs_root, profile)
    if datasets is not None:
        datasets = [datasets] if isinstance(datasets, str) else list(datasets)
        table = table[table["dataset"].isin(datasets)].reset_index(drop=True)
    dropped, partial = 0, []
    if grid_only:
        table, dropped = grid_runs(table, profile)
    if complete_only and not table.empty:
        size = table.groupby(["dataset", "seed"])["key"].transform("nunique")
        partial = sorted({f"{d} seed {int(s)}" for d, s in table.loc[size < GRID_SIZE, ["dataset", "seed"]]
                          .itertuples(index=False)})
        table = table[size >= GRID_SIZE].reset_index(drop=True)
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
        "networks": int(len(runs)), "grid_size": GRID_SIZE,
        "coverage": [{"dataset": c["dataset"], "seed": int(c["seed"]), "networks": int(c["networks"]),
                      "of": GRID_SIZE} for c in coverage],
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
    cov = ", ".join(f"{c['dataset']} seed {c['seed']}: {c['networks']}/{GRID_SIZE}" for c in prov["coverage"])
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
            rows.append({"dataset": dataset, "seed": int(seed), "networks": len(part), "of": GRID_SIZE,
                         "missing": ", ".join(missing)})
        return pd.DataFrame(rows)

    def coverage_text(self) -> str:
        """One line: ``cifar10 seed 0: 31 of 31 networks`` (per data set and seed)."""
        return "; ".join(f"{r.dataset} seed {r.seed}: {r.networks} of {r.of} networks"
                         for r in self.coverage().itertuples())

    @property
    def complete(self) -> bool:
        return bool((self.coverage()["networks"] >= GRID_SIZE).all())


def _read(folder: Path, profile: str) -> Results:
    import numpy as np
    import pandas as pd
    runs = pd.read_csv(folder / "runs.csv")
    for col in ("init", "regime"):
        runs[col] = runs[col].astype(object).where(runs[col].notna(), None)
    metrics = pd.read_csv(folder / "metrics.csv")
    prov = json.loads((folder / "provenance.json").read_text()) if (folder / "provenance.json").is_file() else {}
    if prov.get("results_format", RESULTS_FORMAT) != RESULTS_FORMAT:
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
            "networks": f"{len(res.runs)} of {GRID_SIZE * len(cov)}",
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


# ----------------------------------------------------------------------------- claims

def _combine(*verdicts: str) -> str:
    """Three-valued AND: does not hold if any part fails, holds if all hold, else inconclusive."""
    if "does not hold" in verdicts:
        return "does not hold"
    return "holds" if all(v == "holds" for v in verdicts) else "inconclusive"


def _sign_test(x, alternative: str) -> tuple[int, int, float]:
    """(positives, non-zero n, one-sided p) of the sign test of ``x`` (ties dropped)."""
    import numpy as np
    from scipy.stats import binomtest
    x = np.asarray(x, dtype=float)
    x = x[x != 0]
    k = int((x > 0).sum())
    if len(x) == 0:
        return 0, 0, 1.0
    return k, len(x), float(binomtest(k, len(x), 0.5, alternative=alternative).pvalue)


def _lower_bound(d, level: float) -> float:
    """One-sided lower confidence bound of the mean of ``d`` (t distribution), ``level`` e.g. 0.95."""
    import numpy as np
    from scipy.stats import t
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n < 2:
        return float("nan")
    se = d.std(ddof=1) / math.sqrt(n)
    return float(d.mean() - t.ppf(level, n - 1) * se)


def _seed_noise(runs) -> float:
    """Pooled seed-to-seed SD of max test accuracy over configs with >= 2 seeds (NaN if none)."""
    import numpy as np
    g = runs.groupby(["dataset", "block", runs["init"].fillna(""), runs["regime"].fillna("")])["max_test_acc"]
    var = g.var(ddof=1)
    n = g.count()
    ok = n >= 2
    if not ok.any():
        return float("nan")
    return float(np.sqrt(((n[ok] - 1) * var[ok]).sum() / (n[ok] - 1).sum()))


def _test_noise(runs) -> float:
    """Binomial SE of one accuracy on the test subset, at the base's accuracy: the floor of any noise."""
    b = runs[runs["block"] == 0]
    if b.empty or "test_images" not in b:
        return float("nan")
    p, n = float(b["max_test_acc"].mean()), float(b["test_images"].mean())
    return math.sqrt(p * (1 - p) / n) if n > 0 else float("nan")


def _unconverged_base(runs) -> str:
    """A caveat when a base reached its best accuracy at its last epoch ('' otherwise).

    Its children train ``epochs`` more epochs from it; if the base was still improving,
    a child can beat it by training longer, not by being compressed (claims C3, C4).
    """
    if "epoch_of_max" not in runs.columns or "epochs" not in runs.columns:
        return ""
    b = runs[runs["block"] == 0]
    last = b[b["epoch_of_max"] >= b["epochs"]]
    if last.empty:
        return ""
    kid_epochs = runs.loc[runs["block"] > 0, "epochs"]
    more = f", and every child trains {kid_epochs.max():g} epochs more from it" if len(kid_epochs) else ""
    return (f"{len(last)} of {len(b)} base(s) reached their best accuracy at their last epoch "
            f"({int(last['epochs'].iloc[0])}) and were still improving{more}: part of a child's lead "
            "over its base may be extra training")


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f} pts"


def _claim_c1(runs, alpha: float, tol: float) -> tuple[str, str, dict]:
    """C1, "no block is more critical than another" (paper Sec. 4 and 5).

    Test. For each seed s and block b, d[s, b] is the mean over the three TM
    initialisers of (child's max test accuracy - base's max test accuracy of seed s);
    TM is the regime in which the whole network adapts to the compressed block, so
    d[s, b] measures what losing block b's depth costs. D_b is the mean of d[s, b]
    over seeds, R = max_b D_b - min_b D_b the spread across blocks.

    * fewer than 2 blocks, or fewer than 2 seeds per block: inconclusive (with one
      seed a block difference cannot be told from seed-to-seed noise);
    * R <= tol: holds (every block costs the same within ``tol``);
    * a one-way ANOVA of d[s, b] with blocks as groups gives p < alpha: does not hold
      (the most critical block is the one with the lowest D_b);
    * otherwise inconclusive (a spread above ``tol`` that is within seed noise).
    """
    import numpy as np
    from scipy.stats import f as f_dist
    m = margins(runs)
    m = m[m["regime"] == "thawed"]
    d = m.groupby(["seed", "block"])["delta"].mean().reset_index()
    D = d.groupby("block")["delta"].mean()
    nums = {"range": float("nan"), "p": float("nan"), "blocks": int(len(D)),
            "seeds": int(d["seed"].nunique()) if len(d) else 0, "tol": tol}
    if len(D) < 2:
        return "inconclusive", "fewer than two blocks have TM networks and a base", nums
    R = float(D.max() - D.min())
    worst, best = int(D.idxmin()), int(D.idxmax())
    nums.update({"range": R, "worst_block": worst, "worst_delta": float(D.min()), "best_block": best,
                 "best_delta": float(D.max())})
    per_block = {int(b): float(v) for b, v in D.items()}
    nums["delta_by_block"] = per_block
    text = (f"TM accuracy minus the base's, by block: "
            + ", ".join(f"b{b} {_pct(v)}" for b, v in per_block.items())
            + f"; spread across blocks {100 * R:.1f} pts (tolerance {100 * tol:.1f})")
    groups = [g["delta"].to_numpy() for _, g in d.groupby("block")]
    if min(len(g) for g in groups) < 2:
        return "inconclusive", text + "; one seed: no estimate of seed noise to compare the spread with", nums
    k, N = len(groups), sum(len(g) for g in groups)
    grand = np.concatenate(groups).mean()
    ssb = sum(len(g) * (g.mean() - grand) ** 2 for g in groups)
    ssw = sum(((g - g.mean()) ** 2).sum() for g in groups)
    if ssw == 0:
        p = 0.0 if ssb > 0 else 1.0
    else:
        p = float(f_dist.sf((ssb / (k - 1)) / (ssw / (N - k)), k - 1, N - k))
    nums["p"] = p
    text += f"; ANOVA over blocks p = {p:.3g}"
    if R <= tol:
        return "holds", text, nums
    if p < alpha:
        return "does not hold", text + f"; block {worst} is the most critical", nums
    return "inconclusive", text + "; the spread is within seed noise", nums


def _claim_c2(runs, alpha: float, margin: float) -> tuple[str, str, dict]:
    """C2, "FM models are much worse than TM models" (paper Sec. 4: "significantly lower").

    Test. Pairs: every (seed, block, init) with both an FM and a TM network; gap =
    TM accuracy - FM accuracy. G is the mean gap; a one-sided sign test asks whether
    TM beats FM in more pairs than chance (ties dropped).

    * fewer than 5 pairs: inconclusive (a sign test cannot reach p < 0.05);
    * sign test p < alpha and G >= margin: holds;
    * sign test p < alpha and G < margin: does not hold (FM is worse, but not by ``margin``);
    * sign test p >= alpha and G < margin: does not hold (FM is not consistently worse);
    * sign test p >= alpha and G >= margin: inconclusive (large but inconsistent gap).

    The pairs are distinct networks, so one seed already gives a test across
    configurations; with several seeds the per-seed mean gaps are reported too.
    """
    g = regime_gaps(runs)
    k, n, p = _sign_test(g["gap"], "greater")
    nums = {"pairs": int(len(g)), "tm_wins": k, "p": p, "margin": margin,
            "mean_gap": float(g["gap"].mean()) if len(g) else float("nan"),
            "min_gap": float(g["gap"].min()) if len(g) else float("nan"),
            "max_gap": float(g["gap"].max()) if len(g) else float("nan")}
    if len(g) < 5:
        return "inconclusive", f"only {len(g)} FM/TM pair(s)", nums
    G = nums["mean_gap"]
    per_seed = g.groupby("seed")["gap"].mean()
    nums["gap_by_seed"] = {int(s): float(v) for s, v in per_seed.items()}
    text = (f"TM beats FM in {k} of {n} pairs (sign test p = {p:.3g}); mean gap {_pct(G)} "
            f"(range {_pct(nums['min_gap'])} to {_pct(nums['max_gap'])}; 'much' = at least {100 * margin:.0f} pts)")
    if p < alpha:
        return ("holds" if G >= margin else "does not hold"), text, nums
    return ("inconclusive" if G >= margin else "does not hold"), text, nums


def _claim_c3(runs, alpha: float) -> tuple[str, str, dict]:
    """C3, "TM models can exceed the base" (paper Sec. 4: TM models "often out perform the baseline").

    Test. For each TM config c (block x init) the per-seed differences
    e[s] = acc(c, s) - base(s). c exceeds the base when the one-sided lower
    confidence bound of mean(e) at level 1 - alpha/m is above 0 (t distribution;
    Bonferroni over the m TM configs, since "can exceed" is a maximum over m tries).

    * fewer than 2 seeds: inconclusive (seed noise unknown; the count of TM networks
      above their base on that seed is reported);
    * at least one config exceeds: holds;
    * no config above the base even on average: does not hold;
    * otherwise inconclusive (above the base on average, within noise).
    """
    m = margins(runs)
    m = m[m["regime"] == "thawed"]
    cfg = m.groupby(["block", "init"])["delta"]
    means, counts = cfg.mean(), cfg.count()
    nums = {"configs": int(len(means)), "above": int((means > 0).sum()),
            "best_delta": float(means.max()) if len(means) else float("nan"),
            "share_above": float((m["delta"] > 0).mean()) if len(m) else float("nan"),
            "networks": int(len(m)), "test_se": _test_noise(runs)}
    if len(means) == 0:
        return "inconclusive", "no TM network with a base", nums
    b, i = means.idxmax()
    nums["best"] = f"b{b} TM-{_SHORT_INIT[i]}"
    text = (f"{int((m['delta'] > 0).sum())} of {len(m)} TM networks above their base; "
            f"best config {nums['best']} at {_pct(nums['best_delta'])} (mean over seeds)")
    if counts.min() < 2:
        se = nums["test_se"]
        return "inconclusive", (text + f"; one seed: seed noise unknown (the test subset alone gives "
                                f"an SE of {100 * se:.1f} pts per accuracy)"), nums
    level = 1 - alpha / len(means)
    lbs = {k: _lower_bound(g.to_numpy(), level) for k, g in cfg}
    exceed = [k for k, lb in lbs.items() if lb > 0]
    nums["exceeding"] = len(exceed)
    text += f"; {len(exceed)} config(s) above the base beyond seed noise (Bonferroni over {len(means)})"
    if exceed:
        return "holds", text, nums
    return ("does not hold" if nums["above"] == 0 else "inconclusive"), text, nums


def _claim_c4(runs, alpha: float) -> tuple[str, str, dict]:
    """C4, "STN converges faster but never exceeds the base" (paper Sec. 4-5).

    Test, in two parts combined by a three-valued AND (fails if a part fails,
    holds if both hold, else inconclusive).

    (a) faster: for each (seed, block, regime), diff = STN's epochs to 99% of its max
    minus the mean of RW's and MW's. Sign test, one-sided (STN fewer epochs), ties
    dropped. Fewer than 5 untied pairs: inconclusive (the measure cannot tell the
    initialisers apart, e.g. with one epoch after compression). Else holds when
    p < alpha and mean diff < 0, fails when mean diff >= 0, and is inconclusive otherwise.

    (b) never exceeds: for each STN config (block x regime) the per-seed
    e[s] = acc - base(s). Fails: some config's one-sided lower bound at level
    1 - alpha/m (Bonferroni over m configs) is above 0. Holds: none is, with at
    least 2 seeds. With one seed: inconclusive (an STN network above its base on
    one seed may be noise; one below it may be a lucky base).
    """
    c = convergence_diffs(runs)
    k, n, p = _sign_test(-c["diff"], "greater")
    mean_diff = float(c["diff"].mean()) if len(c) else float("nan")
    by_regime = c.groupby("regime")["diff"].mean()
    nums = {"pairs": int(len(c)), "stn_faster": k, "nonzero": n, "p_faster": p, "mean_diff": mean_diff,
            "diff_fm": float(by_regime.get("frozen", float("nan"))),
            "diff_tm": float(by_regime.get("thawed", float("nan")))}
    if n < 5:
        va = "inconclusive"  # e.g. one epoch after compression: every network converges "at epoch 1"
    elif p < alpha and mean_diff < 0:
        va = "holds"
    else:
        va = "does not hold" if mean_diff >= 0 else "inconclusive"
    text_a = (f"(a) STN needs {mean_diff:+.2f} epochs to 99% of max vs RW/MW on average "
              f"(FM {nums['diff_fm']:+.2f}, TM {nums['diff_tm']:+.2f}); fewer in {k} of {n} "
              f"untied pairs (sign test p = {p:.3g}): {va}")
    m = margins(runs)
    m = m[m["init"] == "stn"]
    cfg = m.groupby(["block", "regime"])["delta"]
    means, counts = cfg.mean(), cfg.count()
    nums.update({"stn_networks": int(len(m)), "stn_above": int((m["delta"] > 0).sum()),
                 "stn_best_delta": float(m["delta"].max()) if len(m) else float("nan")})
    if len(means) == 0:
        vb = "inconclusive"
        text_b = "(b) no STN network with a base: inconclusive"
    elif counts.min() < 2:
        vb = "inconclusive"
        text_b = (f"(b) {nums['stn_above']} of {len(m)} STN networks above their base (best "
                  f"{_pct(nums['stn_best_delta'])}); one seed: inconclusive")
    else:
        level = 1 - alpha / len(means)
        exceed = [key for key, g in cfg if _lower_bound(g.to_numpy(), level) > 0]
        nums["stn_exceeding"] = len(exceed)
        vb = "does not hold" if exceed else "holds"
        text_b = (f"(b) {len(exceed)} STN config(s) above the base beyond seed noise "
                  f"({nums['stn_above']} of {len(m)} networks above it on their seed): {vb}")
    nums["verdict_a"], nums["verdict_b"] = va, vb
    return _combine(va, vb), text_a + "; " + text_b, nums


def claims(runs, alpha: float = 0.05, tol: float = 0.02, margin: float = 0.05, by_dataset: bool = True):
    """Test the paper's four conclusions (Sec. 4-5) on a runs table; one row per claim and data set.

    The tests are defined in the docstrings of ``_claim_c1`` ... ``_claim_c4``
    (``help(triage.report._claim_c1)``). Accuracies are the networks' maximum test
    accuracy (the paper's Fig. 2 measure), convergence the epochs to 99% of it (Fig. 4).
    With several data sets an ``all`` row per claim combines them: fails if it fails
    on any data set, holds if it holds on all, else inconclusive.

    Args:
        runs: ``Results.runs`` (or ``triage.grid.results_table``): columns dataset, seed,
            block, init, regime, max_test_acc, epochs_to_99pct, test_images.
        alpha: significance level of every test.
        tol: C1's accuracy spread across blocks (fraction) that counts as "no block more critical".
        margin: C2's mean TM-FM gap (fraction) that counts as "much worse".
        by_dataset: one row per data set (else one row for all data pooled).

    Returns:
        DataFrame: claim, dataset, statement, verdict (holds | does not hold | inconclusive),
        summary (the numbers, one line), numbers (dict), seeds, networks, caveat.

    Example:
        >>> claims(load("cpu").runs)[["claim", "verdict"]]           # doctest: +SKIP
    """
    import pandas as pd
    missing = [c for c in ("dataset", "seed", "block", "init", "regime", "max_test_acc", "epochs_to_99pct")
               if c not in runs.columns]
    if missing:
        raise ValueError(f"the runs table lacks the column(s) {', '.join(missing)}; pass Results.runs "
                         "or a triage.grid.results_table")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    groups = list(runs.groupby("dataset", sort=False)) if by_dataset else [("all", runs)]
    rows = []
    for dataset, part in groups:
        seeds = int(part["seed"].nunique())
        setting = setting_caveat(part)
        unconverged = _unconverged_base(part)
        for claim, (verdict, text, nums) in {
                "C1": _claim_c1(part, alpha, tol), "C2": _claim_c2(part, alpha, margin),
                "C3": _claim_c3(part, alpha), "C4": _claim_c4(part, alpha)}.items():
            caveat = [f"{seeds} seed{'s' if seeds != 1 else ''}" + (" (the paper's claims deserve >= 3)"
                                                                    if seeds < 3 else "")]
            n_grid = len(part)
            if n_grid < GRID_SIZE * seeds:
                caveat.append(f"partial grid: {n_grid} of {GRID_SIZE * seeds} networks")
            if claim in ("C3", "C4") and unconverged:
                caveat.append(unconverged)
            if claim == "C4":
                ep = sorted(part.loc[part["block"] > 0, "epochs"].dropna().unique())
                caveat.append(f"epochs to 99% counted in whole epochs out of {', '.join(f'{e:g}' for e in ep)} "
                              "after compression (paper: 25); STN's initialisation epochs are not counted")
            noise = _seed_noise(part)
            if not math.isnan(noise):
                nums["seed_sd"] = noise
            caveat.append(setting)
            rows.append({"claim": claim, "dataset": dataset, "statement": CLAIMS[claim], "verdict": verdict,
                         "summary": text, "numbers": nums, "seeds": seeds, "networks": n_grid,
                         "caveat": "; ".join(caveat)})
    out = pd.DataFrame(rows)
    if by_dataset and runs["dataset"].nunique() > 1:
        extra = []
        for claim, part in out.groupby("claim", sort=False):
            extra.append({"claim": claim, "dataset": "all", "statement": CLAIMS[claim],
                          "verdict": _combine(*part["verdict"]),
                          "summary": "; ".join(f"{d}: {v}" for d, v in zip(part["dataset"], part["verdict"])),
                          "numbers": {}, "seeds": int(part["seeds"].min()), "networks": int(part["networks"].sum()),
                          "caveat": "combined over data sets: fails if it fails on one, holds if it holds on all"})
        out = pd.concat([out, pd.DataFrame(extra)], ignore_index=True)
    return out


# ----------------------------------------------------------------------------- explorer

def explorer(results: Results, runs_root=None, data_root=None):
    """An ipywidgets view of the results: data set, block, initialiser, regime -> curves and activations.

    For readers who run the notebook: offline, Jupyter Book renders widgets as
    nothing, so the book draws the same views as static figures too. Activations of
    any selected network are computed from its weights when its run folder is in the
    store (``plots.plot_block1_activations``); otherwise only the exported Fig. 3
    models (Base, FM-STN, TM-STN, TM-RW of block 1) can be shown.

    Args:
        results: :func:`load`'s output.
        runs_root: run store with the weights (default ``$TRIAGE_RUNS`` or ``<checkout>/runs``).

    Returns:
        an ``ipywidgets.VBox``; display it.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from . import plots
    from .experiments import RunStore, make_config
    store = RunStore(runs_root) if runs_root is not None else RunStore()
    runs, metrics, tag = results.runs, results.metrics, results.tag
    ds = w.Dropdown(options=results.datasets, description="data set")
    block = w.Dropdown(options=[("base", 0)] + [(f"block {b}", b) for b in range(1, 6)], value=1,
                       description="block")
    init = w.Dropdown(options=[("RW", "random"), ("MW", "mean"), ("STN", "stn")], value="stn",
                      description="init")
    regime = w.Dropdown(options=[("FM", "frozen"), ("TM", "thawed")], value="thawed", description="regime")
    seed = w.Dropdown(options=results.seeds, description="seed (maps)")

    def show(dataset, block, init, regime, seed):
        plots.plot_run_curves(metrics, runs, dataset, block, init, regime, tag)
        plt.show()
        cfg = make_config(dataset, block, init if block else None, regime if block else None,
                          results.profile, seed)
        if store.is_done(cfg):
            plots.plot_block1_activations(store.path(cfg), data_root=data_root)
            plt.show()
        elif results.activations is not None and cfg.key() in [str(k) for k in results.activations["keys"]]:
            plots.plot_activation_maps(results.activations, tag)
            plt.show()
        else:
            print(f"no weights of {dataset}/{cfg.name} (seed {seed}) in {store.root}: activations are "
                  "exported only for Base, FM-STN, TM-STN and TM-RW of block 1")

    out = w.interactive_output(show, {"dataset": ds, "block": block, "init": init, "regime": regime,
                                      "seed": seed})
    return w.VBox([w.HBox([ds, block, init, regime, seed]), out])


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
    from .data import DataError
    try:
        export(args.profile, args.runs, args.out, datasets=args.dataset, grid_only=not args.all_runs,
               complete_only=args.complete_only, fig3=not args.no_fig3, data_root=args.data_root,
               log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ValueError, DataError) as e:
        print(f"triage: error: {e}", file=sys.stderr)
        return 2
    return 0
