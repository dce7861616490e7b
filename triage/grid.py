"""What the Deep Net Triage grid runs (Sec. 3-4): its configs, their state, the finished runs, the CLI.

Per data set the paper trains one base and, for each of the five blocks of
VGG16-BN, three initialisers (RW, MW, STN; Sec. 3.1) x two regimes (FM, TM;
Sec. 3.2): 1 + 5 x 3 x 2 = 31 networks, 124 over the four data sets.

One reason to change: the shape of the grid or how its state is reported. This
module says *what* runs: the configs (:func:`expand_grid`), each network's state
(:func:`grid_status`), the finished runs as one table (:func:`results_table`), the smoke
grid trained directly (:func:`run_smoke_grid`) and the ``triage grid`` / ``triage status`` commands. *How* a network is executed
(its lock, papermill or a direct run) is :mod:`triage.execute`; how many are scheduled (the local,
dask and slurm executors, :func:`run_grid`) is :mod:`triage.executors`; the template notebook's
contract is :mod:`triage.template`.
Their public names stay importable from here.

Example:
    >>> from triage import grid
    >>> cfgs = grid.expand_grid("mnist", profile="smoke")        # 31 configs, base first
    >>> report = grid.run_grid(cfgs)                             # doctest: +SKIP
    >>> len(grid.results_table(profile="smoke"))                 # doctest: +SKIP
    31
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
from pathlib import Path
from typing import Iterable

from .data import DATASETS
from .execute import ERROR_FILE, LOCK_FILE, RunLock, execute_network, is_complete  # noqa: F401
from .executors import EXECUTORS, GridReport, run_grid  # noqa: F401
from .experiments import (_FORMAT2_DEFAULTS, MODELS, PROFILES, STORE_FORMAT, ConfigError, RunConfig, RunStore,
                          default_runs_root, make_config)
from .init import INITS
from .template import (GLUED, NOTEBOOK, PARTIAL_NOTEBOOK, TEMPLATE_PARAMETERS, check_template,  # noqa: F401
                       default_template, glue_summary, notebook_parameters, notebook_scraps)
from .train import REGIMES

# execute_network, RunLock, ... (triage.execute), run_grid (triage.executors) and glue_summary, notebook_scraps, ...
# (triage.template) stay importable from here for older code and stored notebooks.
__all__ = ["BLOCKS", "STATES", "expand_grid", "network_state", "grid_status", "status_counts",
           "results_table", "run_smoke_grid", "add_commands", "main",
           "EXECUTORS", "NOTEBOOK", "ERROR_FILE", "default_template", "check_template", "notebook_parameters",
           "execute_network", "run_grid", "GridReport", "RunLock", "is_complete", "glue_summary",
           "notebook_scraps"]

BLOCKS = (1, 2, 3, 4, 5)
# Order of precedence when several apply (a failed network being retried is "running").
STATES = ("done", "running", "failed", "partial", "missing")


# ----------------------------------------------------------------------------- grid

def _as_tuple(value, allowed, what: str) -> tuple:
    if value is None or value == "all" or value == ["all"] or value == ("all",):
        return tuple(allowed)
    if isinstance(value, (str, int)):
        value = (value,)
    out = tuple(dict.fromkeys(value))  # de-duplicated, order kept
    bad = [v for v in out if v not in allowed]
    if bad:
        raise ConfigError(f"unknown {what} {bad[0]!r}; choose from {', '.join(map(str, allowed))} or all")
    return out


def expand_grid(datasets="all", profile: str = "smoke", seeds: Iterable[int] = (0,),
                blocks: Iterable[int] | None = BLOCKS, inits: Iterable[str] | None = INITS,
                regimes: Iterable[str] | None = REGIMES, **overrides) -> list[RunConfig]:
    """The configs of the grid: per data set and seed, the base first, then its children.

    Args:
        datasets: a name of ``DATASETS``, a list of them, or ``"all"``.
        profile: smoke | cpu | paper.
        seeds: one grid per seed.
        blocks: blocks to compress (1..5; default all five).
        inits: random | mean | stn (default all three, paper Sec. 3.1).
        regimes: frozen | thawed (default both, paper Sec. 3.2).
        **overrides: further RunConfig fields for every network (e.g. ``epochs=3``:
            the epochs after compression; ``stn_epochs``, ``width``). ``epochs`` is not
            applied to the base, which keeps its profile's epochs because every child
            starts from ``child.parent()``.

    Returns:
        list of RunConfig; ``len == len(datasets) * len(seeds) * (1 + blocks*inits*regimes)``.

    Example:
        >>> cfgs = expand_grid("mnist", "smoke")
        >>> len(cfgs), cfgs[0].name, cfgs[1].name
        (31, 'base', 'b1-random-frozen')
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    datasets = _as_tuple(datasets, DATASETS, "dataset")
    model = overrides.get("model", "vgg16_bn")
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    all_blocks = tuple(range(1, MODELS[model] + 1))   # VGG16's 5 blocks, a ResNet's stages
    blocks = all_blocks if tuple(blocks or ()) == BLOCKS else blocks
    blocks = _as_tuple(blocks, all_blocks, "block")
    inits = _as_tuple(inits, INITS, "init")
    regimes = _as_tuple(regimes, REGIMES, "regime")
    seeds = tuple(dict.fromkeys(int(s) for s in ([seeds] if isinstance(seeds, int) else seeds)))
    if not seeds:
        raise ConfigError("give at least one seed")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"seeds must be >= 0, got {min(seeds)}")
    base_overrides = {k: v for k, v in overrides.items() if k != "epochs"}
    cfgs: list[RunConfig] = []
    for dataset in datasets:
        for seed in seeds:
            base = make_config(dataset, 0, None, None, profile, seed, **base_overrides)
            cfgs.append(base)
            if PROFILES[profile].control:
                # the continued base: the reference a child is compared with (same extra training)
                cfgs.append(make_config(dataset, 0, None, None, profile, seed, control=True, **overrides))
            for block in blocks:
                for init in inits:
                    for regime in regimes:
                        child = make_config(dataset, block, init, regime, profile, seed, **overrides)
                        if child.parent() != base:  # the child would train its own base in-kernel
                            raise ConfigError(f"override(s) {sorted(overrides)} make {child.name} start "
                                              "from another base than the grid's; drop them")
                        cfgs.append(child)
    return cfgs


def run_smoke_grid(dataset: str = "mnist", store=None, *, blocks=None, inits=None, regimes=None,
                   data_root=None, device: str = "auto", progress: bool = True) -> list[Path]:
    """Train a smoke-profile grid with ``triage.run`` directly (no notebooks); finished runs are reused.

    The explicit way to results on a machine without stored ones
    (:func:`triage.report.load` only reads): ``run_smoke_grid()``, then
    ``triage.report.export("smoke", datasets=["mnist"])``, then ``triage.report.load("smoke")``.
    Executing every network as a notebook (``triage grid``) costs a kernel start, imports and two figures per network on
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
    from .experiments import run
    store = store if isinstance(store, RunStore) else RunStore(store) if store is not None else RunStore()
    cfgs = expand_grid(dataset, "smoke", [0], blocks or BLOCKS, inits or INITS, regimes or REGIMES)
    out = []
    for cfg in tqdm(cfgs, desc=f"smoke grid {dataset}", unit="net", disable=not progress,
                    file=sys.stderr):
        out.append(run(cfg, store, data_root=data_root, device=device, progress=False, log=lambda m: None))
    return out


# ----------------------------------------------------------------------------- status and results

def network_state(store: RunStore, cfg: RunConfig) -> tuple[str, str | None]:
    """(state, detail) of one network; state is one of STATES.

    running: its lock is held; failed: ``error.json`` (detail: the message);
    done: finished run; partial: an interrupted training (checkpoint or metrics)
    that a rerun resumes; missing: nothing yet.
    """
    d = store.path(cfg)
    holder = RunLock.holder(d)
    if holder is not None:
        return "running", f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
    err = d / ERROR_FILE
    if err.exists():
        try:
            return "failed", json.loads(err.read_text()).get("message")
        except ValueError:
            return "failed", "unreadable error.json"
    if store.is_done(cfg):
        return "done", None if (d / NOTEBOOK).exists() else "no notebook yet"
    if (d / "checkpoint.pt").exists() or (d / "metrics.csv").exists():
        return "partial", "interrupted; a rerun resumes from the last epoch"
    return "missing", None


def grid_status(cfgs: list[RunConfig], store: RunStore | str | Path | None = None):
    """One row per network of ``cfgs``: dataset, seed, name, scheme, state, detail, run_dir.

    Example:
        >>> st = grid_status(expand_grid("all", "cpu"))            # doctest: +SKIP
        >>> status_counts(st).loc["mnist", "done"]                 # doctest: +SKIP
        31
    """
    import pandas as pd
    store = store if isinstance(store, RunStore) else RunStore(store) if store is not None else RunStore()
    rows = []
    for c in cfgs:
        state, detail = network_state(store, c)
        rows.append({"dataset": c.dataset, "seed": c.seed, "block": c.block, "name": c.name,
                     "scheme": c.scheme, "state": state, "detail": detail, "key": c.key(),
                     "run_dir": str(store.path(c))})
    return pd.DataFrame(rows)


def status_counts(status):
    """Networks per data set and state (columns STATES + total) from :func:`grid_status`."""
    import pandas as pd
    counts = pd.crosstab(status["dataset"], pd.Categorical(status["state"], categories=STATES),
                         dropna=False)
    counts = counts.reindex(columns=list(STATES), fill_value=0)
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    order = [d for d in DATASETS if d in counts.index]
    return counts.loc[order]


def results_table(root=None, profile: str | None = None, dataset: str | None = None,
                  exported: bool = False):
    """All finished runs under ``root`` as one DataFrame (one row per run).

    Columns: ``name``, ``scheme``, ``key``, every RunConfig field (dataset, block,
    init, regime, profile, seed, width, ...), the summary metrics (max_test_acc,
    final_test_acc, epoch_of_max, epochs_to_99pct, epochs, params, train_seconds,
    stn_loss_final, train_images, test_images), ``run_dir`` and ``notebook`` (its
    path, or None). Rows are sorted by profile, dataset, seed, block, init, regime.

    Args:
        root: the store root (RunStore or path; default ``$TRIAGE_RUNS`` or ``./runs``).
        profile, dataset: keep only these (None: all).
        exported: read the runs exported to a results folder (``root/<profile>/runs/<dataset>/``,
            see :func:`triage.experiments.export_run`) instead of a run store; children there
            have no weights.

    Example:
        >>> df = results_table(profile="smoke", dataset="mnist")   # doctest: +SKIP
        >>> df.pivot_table("max_test_acc", "scheme", "block")      # doctest: +SKIP
    """
    import pandas as pd
    root = root.root if isinstance(root, RunStore) else Path(root) if root is not None else default_runs_root()
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    rows = []
    pattern = f"{profile or '*'}/runs/{dataset or '*'}/*/summary.json" if exported else \
        f"{profile or '*'}/{dataset or '*'}/*/summary.json"
    for summary_file in sorted(root.glob(pattern)):
        d = summary_file.parent
        if not exported and not (d / "weights.pt").exists():
            continue
        try:
            meta = json.loads((d / "config.json").read_text())
            summary = json.loads(summary_file.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("store_format") != STORE_FORMAT:
            continue
        cfg = meta["config"]
        stn = summary.get("stn_losses") or []
        row = {"name": meta.get("name"), "scheme": meta.get("scheme"), "key": meta.get("key")}
        row.update({k: cfg.get(k, _FORMAT2_DEFAULTS.get(k)) for k in fields})
        if isinstance(row.get("extra_blocks"), list):   # JSON has no tuples; keep cells hashable
            row["extra_blocks"] = tuple(row["extra_blocks"])
        row.update({k: v for k, v in summary.items() if k not in row and k != "stn_losses"})
        row["stn_loss_final"] = stn[-1] if stn else float("nan")
        # where and from which code it ran: base and audit may differ in device (GPU vs CPU)
        row["device"], row["git_hash"] = meta.get("device"), meta.get("git_hash")
        row["run_dir"] = str(d)
        row["notebook"] = str(d / NOTEBOOK) if (d / NOTEBOOK).exists() else None
        rows.append(row)
    cols = ["name", "scheme", "key"] + fields + [c for c in ["max_test_acc", "final_test_acc", "epoch_of_max",
                                                 "epochs_to_99pct", "epochs", "params", "train_seconds",
                                                 "stn_loss_final", "train_images", "test_images",
                                                 "device", "git_hash", "run_dir", "notebook"] if c not in fields]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df[[c for c in cols if c in df.columns] + [c for c in df.columns if c not in cols]]
    df["_i"] = df["init"].fillna("")
    df["_r"] = df["regime"].fillna("")
    df["_c"] = df["control"].fillna(False).astype(bool)
    df = df.sort_values(["profile", "dataset", "seed", "block", "_c", "_i", "_r"]).drop(columns=["_i", "_r", "_c"])
    return df.reset_index(drop=True)


# ----------------------------------------------------------------------------- command line

def add_commands(subparsers) -> tuple[str, ...]:
    """Add ``grid`` and ``status`` to ``triage``'s subparsers; returns their names."""
    def common(p):
        p.add_argument("--dataset", nargs="+", default=None, metavar="NAME",
                       help=f"one or more of {', '.join(DATASETS)}, or all")
        p.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)")
        p.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="SEED", help="default: 0")
        p.add_argument("--blocks", nargs="+", type=int, default=list(BLOCKS), metavar="B",
                       help="blocks to compress (default: 1 2 3 4 5)")
        p.add_argument("--inits", nargs="+", default=list(INITS), metavar="INIT",
                       help="default: random mean stn")
        p.add_argument("--regimes", nargs="+", default=list(REGIMES), metavar="REGIME",
                       help="default: frozen thawed")
        p.add_argument("--epochs", type=int, default=None,
                       help="epochs after compression (children); the base keeps its profile's")
        p.add_argument("--stn-epochs", type=int, default=None)
        p.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE", dest="overrides",
                       help="other RunConfig fields for every network, e.g. width=0.5 precision=fp32 "
                            "train_per_class=100")
        p.add_argument("--out", default=None, help="runs folder (default: $TRIAGE_RUNS or ./runs)")

    g = subparsers.add_parser("grid", help="run the grid of networks as executed notebooks")
    common(g)
    g.add_argument("--executor", default="local", help="local (default) | dask | slurm")
    g.add_argument("--jobs", type=int, default=1,
                   help="local executor: networks at once, each with cores/JOBS threads (default 1; "
                        "2 is ~1.2x faster on 2 CPU cores, see benchmarks/RESULTS.md)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads per network with --jobs > 1 (default: cores / JOBS)")
    g.add_argument("--no-notebooks", action="store_true",
                   help="train with triage.run directly, without an executed notebook per network "
                        "(~7 s less per network; the campaign runs this way)")
    g.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://HOST:8786")
    g.add_argument("--scheduler-timeout", type=float, default=10.0, help="seconds (default 10)")
    g.add_argument("--slurm", nargs="*", default=[], metavar="KEY=VALUE",
                   help="submitit parameters, e.g. timeout_min=600 slurm_partition=gpu gpus_per_node=1")
    g.add_argument("--template", default=None, help="template notebook (default: the book's)")
    g.add_argument("--data-root", default=None)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--timeout", type=float, default=None, help="seconds one notebook cell may run")
    g.add_argument("--no-progress", action="store_true", help="one log line per network, no bar")
    g.add_argument("--retrain-exported", action="store_true",
                   help="with --out or $TRIAGE_RUNS: train networks again that the checkout's results/ "
                        "already holds (by default that is an error, since this store does not read them)")
    s = subparsers.add_parser("status", help="done / running / failed / partial / missing per data set")
    common(s)
    s.add_argument("--table", action="store_true", help="also print max test accuracy per scheme and block")
    s.add_argument("--failed", action="store_true", help="list every failed network with its error")
    return ("grid", "status")


def _key_values(items, option: str) -> dict:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ConfigError(f"{option} takes KEY=VALUE items, got {item!r}")
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v  # a bare word: a string
    return out


def _cfgs_from_args(args, datasets=None) -> list[RunConfig]:
    datasets = datasets or args.dataset
    if not datasets:
        raise ConfigError("give --dataset NAME [NAME ...] or --dataset all")
    overrides = _key_values(args.overrides, "--set")
    own = {"dataset", "block", "init", "regime", "profile", "seed"} & set(overrides)
    if own:
        raise ConfigError(f"--set cannot change {', '.join(sorted(own))}; use the option of that name")
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.stn_epochs is not None:
        overrides["stn_epochs"] = args.stn_epochs
    try:
        return expand_grid(datasets, args.profile, args.seeds, args.blocks, args.inits, args.regimes,
                           **overrides)
    except TypeError as e:  # e.g. --set width=abc reaches a comparison with a number
        raise ConfigError(f"bad --set value: {e}") from e


def main(args: argparse.Namespace) -> int:
    """Run ``triage grid`` / ``triage status`` from parsed arguments; returns the exit code.

    0: every network complete; 1: some network failed; 2: bad input; 130: interrupted.
    """
    from ._cli import guarded
    return guarded(lambda: _grid_main(args), "rerun the same command to continue (finished networks are "
                   "kept, an interrupted training resumes from its last epoch)")


def _grid_main(args) -> int:
    if args.command == "status":
        return _status_main(args)
    if args.executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {args.executor!r}; choose one of {', '.join(EXECUTORS)}")
    if args.executor == "dask" and not args.scheduler:
        raise ConfigError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    cfgs = _cfgs_from_args(args)
    store = RunStore(args.out) if args.out else RunStore()
    if not args.retrain_exported:
        _check_exports_seen(cfgs, store)
    progress = not args.no_progress
    report = run_grid(cfgs, store, executor=args.executor, scheduler=args.scheduler,
                      template=args.template, data_root=args.data_root, device=args.device,
                      timeout=args.timeout, scheduler_timeout=args.scheduler_timeout,
                      slurm=_key_values(args.slurm, "--slurm"), progress=progress, jobs=args.jobs,
                      threads=args.threads, notebooks=not args.no_notebooks,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"triage grid: {report.summary()} -> {store.root}", file=sys.stderr)
    if not report.ok:
        print(f"triage grid: {len(report.failed)} network(s) did not finish; see error.json and "
              f"notebook.ipynb in their folders, or `triage status --profile {args.profile} --failed`",
              file=sys.stderr)
        return 1
    return 0


def _exports_unseen(cfgs, store: RunStore) -> list:
    """The configs ``store`` counts as not done although the checkout's results/ holds them
    (a store chosen with --out or $TRIAGE_RUNS reads no exports unless $TRIAGE_RESULTS names them)."""
    if store.results is not None:
        return []
    from .store import default_results_root
    seen = RunStore(store.root, results=default_results_root())
    return [c for c in cfgs if not store.is_done(c) and seen.export_path(c) is not None
            and (seen.export_path(c) / "summary.json").exists()]


def _check_exports_seen(cfgs, store: RunStore) -> None:
    """A store chosen with --out or $TRIAGE_RUNS reads no exports (it must not mix into the
    committed results), so it would train again, silently, every network that the checkout's
    results/ holds: hours of a campaign, and bases that differ from the ones the exported
    children were trained from. Refuse, and say how to read them instead."""
    held = _exports_unseen(cfgs, store)
    if held:
        from .store import default_results_root
        raise ConfigError(
            f"{len(held)} of these {len(cfgs)} networks are already in {default_results_root()} (e.g. "
            f"{held[0].dataset}/{held[0].name} seed {held[0].seed}), which the store {store.root} does not "
            f"read: set TRIAGE_RESULTS={default_results_root().parent} to use them (finished runs are then "
            "exported there too), or pass --retrain-exported to train them again")


def _print_remaining(st, store: RunStore, profile: str) -> None:
    """What is left, in hours of one process, priced at the finished networks' median times."""
    import pandas as pd
    from .tables import remaining_cost
    exported = store.results.parent if store.results is not None else None
    table = pd.concat([results_table(store, profile)] + ([results_table(exported, profile, exported=True)]
                                                         if exported is not None else []), ignore_index=True)
    cost = remaining_cost(st, table)
    for dataset, r in cost.iterrows():
        unpriced = f"; {r.left - r.counted} not priced (nothing of their kind finished)" if r.counted < r.left else ""
        print(f"{dataset}: {r.left} network(s) left, about {r.hours:.1f} hours of one process at the median "
              f"times of the finished ones ({r.basis}; running ones counted whole){unpriced}")


def _status_main(args) -> int:
    import pandas as pd
    cfgs = _cfgs_from_args(args, args.dataset or ["all"])
    store = RunStore(args.out) if args.out else RunStore()
    st = grid_status(cfgs, store)
    counts = status_counts(st)
    print(f"profile {args.profile}, seeds {' '.join(map(str, args.seeds))}, store {store.root}")
    print(counts.to_string())
    _print_remaining(st, store, args.profile)
    unseen = _exports_unseen(cfgs, store)
    if unseen:
        from .store import default_results_root
        # the same blind spot `triage grid` refuses on: say it, or "missing" reads as lost work
        print(f"\n{len(unseen)} of the networks counted missing or unfinished here are done in "
              f"{default_results_root()}, which this store does not read: set "
              f"TRIAGE_RESULTS={default_results_root().parent} to count them")
    for state in ("running", "failed", "partial"):
        rows = st[st.state == state]
        if len(rows) and (state != "failed" or args.failed or len(rows) <= 5):
            print(f"\n{state}:")
            for r in rows.itertuples():
                print(f"  {r.dataset}/{r.name} seed {r.seed}: {r.detail}")
        elif len(rows):
            print(f"\n{len(rows)} failed; list them with --failed")
    if args.table:
        df = results_table(store, args.profile)
        df = df[df.key.isin(set(st.key))]
        if len(df):
            with pd.option_context("display.width", 200, "display.precision", 3):
                for ds, part in df.groupby("dataset", sort=False):
                    print(f"\n{ds}: max test accuracy (mean over seeds), profile {args.profile}")
                    print(part.pivot_table("max_test_acc", "scheme", "block", aggfunc="mean").to_string())
    return 0
