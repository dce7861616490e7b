"""The experiment grid of Deep Net Triage (Sec. 3-4): every network as an executed notebook.

Per data set the paper trains one base and, for each of the five blocks of
VGG16-BN, three initialisers (RW, MW, STN; Sec. 3.1) x two regimes (FM, TM;
Sec. 3.2): 1 + 5 x 3 x 2 = 31 networks, 124 over the four data sets.

Each network is executed through papermill from a template notebook
(``book/templates/triage_experiment.ipynb``), which calls :func:`triage.run`
(train, or reuse the stored run), plots the learning curves and the block-1
activations (the paper's Fig. 3 view) and glues the summary numbers. The
executed notebook is stored beside the run's numbers::

    <runs>/<profile>/<dataset>/<name>-<hash>/
        config.json, metrics.csv, summary.json, weights.pt   (triage.run, see experiments.py)
        notebook.ipynb     the executed template (also when it failed: the failing cell is kept)
        error.json         only after a failure: message, traceback tail, time
        .lock              held (flock) by the process executing this network
        .notebook.partial.ipynb   while executing; renamed to notebook.ipynb at the end

A network is *complete* when its run is done (summary.json and weights.pt) and
its notebook ran without error; a rerun of the same grid skips complete
networks, so nothing finished is ever recomputed, and resumes an interrupted
training from its last checkpointed epoch (experiments.run does that).

Executors. ``local`` (default) runs the networks one after another, each with all
the cores; ``jobs=k`` runs k side by side, each kernel limited to cores/k threads
(``--jobs 2`` is 1.2x faster for the cpu profile on 2 cores: bf16 scales worse
from 1 to 2 threads than two processes do; ``benchmarks/grid_throughput.py``
measures it; on one GPU, k trainings share the device). For
more than one machine, ``dask`` submits the same per-network function
(:func:`execute_network`) to a Dask distributed scheduler (a ``LocalCluster``,
or a dask-jobqueue ``SLURMCluster``/``PBSCluster``); ``slurm`` submits it as
Slurm jobs through submitit (imported lazily; not a dependency). All executors
share the store (it must be on a file system the workers see), the lock and
the resume semantics, and submit a data set's children only after its base
finished. Start Dask workers with one thread each (``dask worker ADDRESS
--nthreads 1``, one worker per GPU or per machine): a network then gets all the
cores of its worker (the grid undoes the nanny's ``OMP_NUM_THREADS=1`` for the
notebook's kernel), as with the local executor.

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
import os
import re
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .data import DATASETS
from .experiments import (_FORMAT2_DEFAULTS, MODELS, PROFILES, STORE_FORMAT, ConfigError, RunConfig, RunStore, _check_folder,
                          atomic_write_json, default_runs_root, make_config)
from .init import INITS
from .train import REGIMES

__all__ = ["BLOCKS", "EXECUTORS", "STATES", "NOTEBOOK", "ERROR_FILE", "default_template",
           "expand_grid", "check_template", "notebook_parameters", "execute_network", "run_grid",
           "GridReport", "RunLock", "is_complete", "network_state", "grid_status", "status_counts",
           "results_table", "glue_summary", "notebook_scraps", "add_commands", "main"]

BLOCKS = (1, 2, 3, 4, 5)
EXECUTORS = ("local", "dask", "slurm")
# Order of precedence when several apply (a failed network being retried is "running").
STATES = ("done", "running", "failed", "partial", "missing")
NOTEBOOK = "notebook.ipynb"
PARTIAL_NOTEBOOK = ".notebook.partial.ipynb"
ERROR_FILE = "error.json"
LOCK_FILE = ".lock"
# What the template's parameters cell must define: the grid passes all of them.
TEMPLATE_PARAMETERS = ("dataset", "block", "init", "regime", "profile", "seed", "epochs",
                       "stn_epochs", "overrides", "runs_root", "data_root", "device")
# Numbers the template glues (glue_summary) and the grid reads back (notebook_scraps).
GLUED = ("key", "dataset", "profile", "seed", "name", "scheme", "max_test_acc", "final_test_acc",
         "epoch_of_max", "epochs_to_99pct", "epochs", "params", "train_seconds")


def default_template() -> Path:
    """The template notebook, shipped with the package (``triage/templates/``).

    ``book/templates/triage_experiment.ipynb`` is a link to it, so the papermill command
    lines of the book work in a checkout, and a non-editable install still finds it.
    """
    return Path(__file__).resolve().parent / "templates" / "triage_experiment.ipynb"


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


def check_template(template: Path | str) -> Path:
    """Check that ``template`` is a notebook with a ``parameters`` cell defining TEMPLATE_PARAMETERS.

    Raises:
        ConfigError: with one line naming what is wrong.
    """
    import nbformat
    template = Path(template)
    if not template.is_file():
        raise ConfigError(f"template notebook {template} does not exist")
    try:
        nb = nbformat.read(template, as_version=4)
    except Exception as e:  # nbformat raises several types for a non-notebook
        raise ConfigError(f"template {template} is not a readable notebook ({type(e).__name__})") from e
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ConfigError(f"template {template} has no cell tagged 'parameters' "
                          f"(papermill needs one defining {', '.join(TEMPLATE_PARAMETERS)})")
    names = set()
    for cell in cells:
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as e:
            raise ConfigError(f"the parameters cell of {template} is not valid Python: {e.msg}") from e
        names |= {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                  for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                  if isinstance(t, ast.Name)}
    missing = [p for p in TEMPLATE_PARAMETERS if p not in names]
    if missing:
        raise ConfigError(f"the parameters cell of {template} does not define {', '.join(missing)}")
    return template


def notebook_parameters(cfg: RunConfig, runs_root, data_root=None, device: str = "auto") -> dict:
    """The papermill parameters that make the template rebuild exactly ``cfg``.

    Fields that differ from the profile's defaults travel as ``epochs``,
    ``stn_epochs`` or in ``overrides``; paths are made absolute so that a worker
    with another working directory finds the same store.
    """
    default = make_config(cfg.dataset, cfg.block, cfg.init, cfg.regime, cfg.profile, cfg.seed)
    diff = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(RunConfig)
            if getattr(cfg, f.name) != getattr(default, f.name)}
    return {
        "dataset": cfg.dataset, "block": cfg.block, "init": cfg.init, "regime": cfg.regime,
        "profile": cfg.profile, "seed": cfg.seed,
        "epochs": diff.pop("epochs", None), "stn_epochs": diff.pop("stn_epochs", None),
        "overrides": diff,
        "runs_root": str(Path(runs_root).resolve()),
        "data_root": None if data_root is None else str(Path(data_root).expanduser().resolve()),
        "device": str(device),
    }


# ----------------------------------------------------------------------------- lock

class RunLock:
    """Exclusive lock of one run folder, so that two processes never execute the same network.

    The lock is an ``flock`` on ``<run_dir>/.lock``: the operating system releases
    it when its holder exits in any way (also ``kill -9`` or a crashed Dask
    worker), so a stale lock cannot exist. The file keeps the holder's pid, host
    and start time for :func:`grid_status`. The file is never removed (removing a
    locked file lets a third process lock a new inode beside the holder).
    Works on local disks and on NFSv4 (Linux maps flock to NFS byte-range locks).

    Args:
        run_dir: the run folder (created if missing).

    Example:
        >>> with RunLock(run_dir):                      # doctest: +SKIP
        ...     execute the network
    """

    def __init__(self, run_dir: Path | str):
        self.path = Path(run_dir) / LOCK_FILE
        self._fh = None

    def acquire(self, blocking: bool = True, poll: float = 2.0, on_wait=None) -> bool:
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        waited = False
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not blocking:
                    fh.close()
                    return False
                if on_wait is not None and not waited:
                    on_wait(RunLock.holder(self.path.parent))
                waited = True
                time.sleep(poll)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        import fcntl
        if self._fh is None:
            return
        try:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    @staticmethod
    def holder(run_dir: Path | str) -> dict | None:
        """``{'pid', 'host', 'since'}`` of the live holder, or None when nobody holds the lock."""
        import fcntl
        path = Path(run_dir) / LOCK_FILE
        try:
            fh = open(path)
        except OSError:
            return None
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    return json.loads(fh.read() or "{}") or {"pid": None, "host": None, "since": None}
                except ValueError:
                    return {"pid": None, "host": None, "since": None}
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return None


# ----------------------------------------------------------------------------- one network

def is_complete(store: RunStore, cfg: RunConfig, notebook: bool = True) -> bool:
    """The grid skips this network: its run is done and, with ``notebook``, its notebook
    executed without error. A run found only in ``results/`` (exported by another machine,
    e.g. on a fresh clone) is complete: its run store folder is gone, notebook and all.
    """
    d = store.path(cfg)
    found = store.find(cfg)
    if found is None or (d / ERROR_FILE).exists():
        return False
    return found != d or not notebook or (d / NOTEBOOK).is_file()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _record_failure(run_dir: Path, cfg: RunConfig, message: str, tb: str) -> None:
    lines = _ANSI.sub("", tb).rstrip().splitlines()
    atomic_write_json(run_dir / ERROR_FILE, {
        "message": message, "traceback_tail": lines[-30:], "key": cfg.key(), "name": cfg.name,
        "notebook": NOTEBOOK if (run_dir / PARTIAL_NOTEBOOK).exists() or (run_dir / NOTEBOOK).exists() else None,
        "host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


_KM_CLASSES: dict = {}
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _dask_thread_vars() -> tuple[str, ...]:
    """Thread variables to drop from a kernel's environment when it runs in a one-thread Dask worker.

    Dask's nanny sets OMP/MKL/OPENBLAS_NUM_THREADS=1 in its workers, meant for many small
    tasks side by side. A grid worker runs one network at a time (``--nthreads 1``), and
    that network should use the cores of its worker as the local executor's does, so
    these are dropped (measured: the same training with 1 thread is ~2x slower on 2 cores,
    and its numbers differ from a 2-thread run's). Outside Dask, nothing is dropped.
    """
    if "distributed" not in sys.modules:
        return ()
    try:
        import dask
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return ()
    nthreads = getattr(worker, "nthreads", None) or getattr(getattr(worker, "state", None), "nthreads", None)
    if nthreads != 1:
        return ()
    forced = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
    return tuple(k for k in _THREAD_VARS if str(forced.get(k)) == "1" and os.environ.get(k) == "1")


def _kernel_manager_class(drop_env: tuple[str, ...] = ()):
    """jupyter_client's AsyncKernelManager, whose kernel environment lacks ``drop_env``."""
    if drop_env not in _KM_CLASSES:
        from jupyter_client.manager import AsyncKernelManager

        class _KernelManager(AsyncKernelManager):
            async def _async_launch_kernel(self, kernel_cmd, **kw):
                if drop_env and kw.get("env") is not None:
                    kw["env"] = {k: v for k, v in kw["env"].items() if k not in drop_env}
                return await super()._async_launch_kernel(kernel_cmd, **kw)

        _KM_CLASSES[drop_env] = _KernelManager
    return _KM_CLASSES[drop_env]


# The kernel's own log only carries transport chatter (a plain-TCP warning at every start,
# "KeyboardInterrupt caught" at every shutdown) that would interleave with the progress bar.
# Cell errors are in the notebook and a dead kernel is reported by papermill. (IPC sockets
# would avoid the warning but race for socket names when two kernels share a folder.)
_KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]


def execute_network(cfg: RunConfig, runs_root, template=None, *, data_root=None, device="auto",
                    timeout: float | None = None, on_wait=None, notebook: bool = True,
                    results_root=None) -> dict:
    """Execute the template for one network (the unit every executor runs) and report it.

    Takes the run folder's lock (waiting while another process holds it), skips a
    complete network, otherwise executes the template with papermill into
    ``.notebook.partial.ipynb`` and renames it to ``notebook.ipynb``, also when a
    cell failed; a failure is recorded in ``error.json`` and reported, never raised,
    so the grid goes on. KeyboardInterrupt propagates (the lock is released; a
    rerun resumes).

    Args:
        cfg: the network.
        runs_root: the store's root folder.
        template: the template notebook (default: :func:`default_template`).
        data_root, device: passed to the notebook (and on to triage.run).
        timeout: seconds a cell may run (None: no limit).
        on_wait: called once with the lock holder's info if the lock is busy.
        notebook: execute the template (False: call :func:`triage.run` in this process, no
            notebook; saves a kernel start and the imports, ~7 s a network, and keeps the
            decoded data sets in memory between networks).
        results_root: where finished runs are exported (None: the store's default).

    Returns:
        dict with ``key, dataset, name, status`` (``done`` | ``reused`` | ``failed``),
        ``run_dir``, ``seconds``, ``error`` (one line or None).
    """
    store = RunStore(runs_root) if results_root is None else RunStore(runs_root, results_root)
    run_dir = store.path(cfg)
    template = Path(template) if template is not None else default_template()
    out = _record(cfg, store, "reused")
    t0 = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire(on_wait=on_wait)
    try:
        if is_complete(store, cfg, notebook):
            return out
        if not notebook:
            return _run_direct(cfg, store, out, t0, data_root=data_root, device=device)
        import papermill as pm
        partial, final = run_dir / PARTIAL_NOTEBOOK, run_dir / NOTEBOOK
        params = notebook_parameters(cfg, store.root, data_root, device)
        error = None
        try:
            pm.execute_notebook(str(template), str(partial), parameters=params, progress_bar=False,
                                execution_timeout=timeout, extra_arguments=_KERNEL_ARGS,
                                kernel_manager_class=_kernel_manager_class(_dask_thread_vars()))
        except pm.PapermillExecutionError as e:
            error = (f"{e.ename}: {e.evalue} (cell {e.exec_count})", "".join(e.traceback))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a dead kernel, a timeout, an unwritable folder...
            error = (f"{type(e).__name__}: {e}".splitlines()[0], traceback.format_exc())
        if error is None and not store.is_done(cfg):
            error = ("the notebook ran but the run has no summary.json/weights.pt "
                     "(does the template call triage.run with these parameters?)", "")
        if error is None:
            glued = notebook_scraps(partial).get("key")
            if glued != cfg.key():
                error = (f"the notebook reports run {glued!r}, the grid expected {cfg.key()!r} "
                         "(the template rebuilt another config)", "")
        out["seconds"] = round(time.perf_counter() - t0, 2)
        # Order matters for a kill at any moment: error.json is written before a failed
        # notebook becomes notebook.ipynb, and removed only after a good one did, so a
        # notebook.ipynb without error.json is always a good one.
        if error is not None:
            _record_failure(run_dir, cfg, *error)
            if partial.exists():
                os.replace(partial, final)
            out.update(status="failed", error=error[0])
        else:
            os.replace(partial, final)
            (run_dir / ERROR_FILE).unlink(missing_ok=True)
            out["status"] = "done"
        return out
    finally:
        lock.release()


def _run_direct(cfg: RunConfig, store: RunStore, out: dict, t0: float, *, data_root, device) -> dict:
    """One network through :func:`triage.run` in this process; a failure is recorded, not raised."""
    from .experiments import run
    run_dir = store.path(cfg)
    try:
        run(cfg, store, data_root=data_root, device=device, progress=False, log=lambda m: None)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 -- the grid goes on; error.json says what failed
        _record_failure(run_dir, cfg, f"{type(e).__name__}: {e}".splitlines()[0], traceback.format_exc())
        out.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
    else:
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
        out["status"] = "done"
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


# ----------------------------------------------------------------------------- executors

@dataclass
class GridReport:
    """What a grid run did: one record per network (see :func:`execute_network`)."""
    results: list[dict] = field(default_factory=list)
    root: Path | None = None

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.results)

    @property
    def failed(self) -> list[dict]:
        """Failed networks, and children skipped because their base failed."""
        return [r for r in self.results if r["status"] in ("failed", "skipped")]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        parts = [f"{self.count('done')} trained", f"{self.count('reused')} reused"]
        if self.count("failed"):
            parts.append(f"{self.count('failed')} failed")
        if self.count("skipped"):
            parts.append(f"{self.count('skipped')} skipped (base failed)")
        return f"{len(self.results)} networks: " + ", ".join(parts)


def _groups(cfgs: list[RunConfig]) -> list[tuple[RunConfig | None, list[RunConfig]]]:
    """(base, children) per data set/profile/seed, in the order given; a base may be absent."""
    groups: dict[str, tuple[RunConfig | None, list[RunConfig]]] = {}
    for c in cfgs:
        gk = c.parent().key()
        base, kids = groups.get(gk, (None, []))
        if not c.is_child:
            groups[gk] = (c, kids)
        else:
            groups[gk] = (base, kids + [c])
    return list(groups.values())


def _with_bases(cfgs: list[RunConfig]) -> list[RunConfig]:
    """``cfgs`` with the base of every child in it, placed before that child.

    A child whose base is not in the grid would train the base inside its own kernel,
    outside the grid's lock and order; so the grid always runs the base itself.
    """
    out, keys = [], set()
    for c in cfgs:
        if c.key() in keys:
            continue
        if c.is_child and c.parent().key() not in keys and c.parent() not in cfgs:
            out.append(c.parent())
            keys.add(c.parent().key())
        out.append(c)
        keys.add(c.key())
    return out


def _skipped(cfg: RunConfig, store: RunStore, base_name: str) -> dict:
    return _record(cfg, store, "skipped",
                   f"not run: its base ({cfg.dataset}/{base_name}, seed {cfg.seed}) failed")


def _preflight(cfgs: list[RunConfig], store: RunStore, template, notebooks: bool = True) -> Path | None:
    """Everything that can be checked before a kernel starts, so bad input changes nothing."""
    if not cfgs:
        raise ConfigError("the grid is empty")
    for cfg in cfgs:
        d = store.path(cfg)
        if (d / "config.json").exists():
            _check_folder(d, cfg)  # refuses a folder of another store format or config
    if not notebooks:
        return None
    template = check_template(template if template is not None else default_template())
    try:
        import papermill  # noqa: F401
    except ImportError as e:
        raise ConfigError("the grid needs papermill (pip install 'triage[book]')") from e
    return template


def _bar(total: int, initial: int, progress: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc="grid", unit="net", disable=not progress,
                dynamic_ncols=True)


def _log_result(bar, r: dict, progress: bool, log) -> None:
    if r["status"] in ("failed", "skipped"):
        msg = f"FAILED {r['dataset']}/{r['name']} (seed {r['seed']}): {r['error']}"
        if r["status"] == "failed":
            msg += f" -> {Path(r['run_dir']) / NOTEBOOK}"
        (bar.write if progress else log)(msg)
    elif not progress:
        log(f"{r['status']:>6} {r['dataset']}/{r['name']} (seed {r['seed']}) in {r['seconds']:.1f} s")


def _record(cfg: RunConfig, store: RunStore, status: str, error: str | None = None) -> dict:
    return {"key": cfg.key(), "dataset": cfg.dataset, "seed": cfg.seed, "name": cfg.name,
            "run_dir": str(store.path(cfg)), "status": status, "seconds": 0.0, "error": error}


def _split_complete(cfgs, store, notebook: bool = True) -> tuple[list[RunConfig], list[dict]]:
    """(networks still to execute, 'reused' records of the complete ones)."""
    todo, reused = [], []
    for c in cfgs:
        if is_complete(store, c, notebook):
            reused.append(_record(c, store, "reused"))
        else:
            todo.append(c)
    return todo, reused


def _run_local(cfgs, store, template, kw, progress, log) -> list[dict]:
    todo, results = _split_complete(cfgs, store, kw.get("notebook", True))
    bar = _bar(len(cfgs), len(cfgs) - len(todo), progress)
    failed_bases: dict[str, str] = {}
    try:
        for base, kids in _groups(todo):
            for cfg in ([base] if base is not None else []) + kids:
                pk = cfg.parent().key()
                if cfg.is_child and pk in failed_bases:
                    r = _skipped(cfg, store, failed_bases[pk])
                else:
                    bar.set_postfix_str(f"{cfg.dataset}/{cfg.name} seed {cfg.seed}")

                    def on_wait(h, cfg=cfg):
                        (bar.write if progress else log)(
                            f"{cfg.dataset}/{cfg.name}: waiting for pid {h.get('pid')} on {h.get('host')}, "
                            "which is executing it")
                    r = execute_network(cfg, store.root, template, on_wait=on_wait, **kw)
                    if not cfg.is_child and r["status"] == "failed":
                        failed_bases[cfg.key()] = cfg.name
                results.append(r)
                _log_result(bar, r, progress, log)
                bar.update(1)
    finally:
        bar.close()
    return results


def _limit_threads(threads: int) -> None:
    """Pool initialiser: this process and the kernels it starts use ``threads`` threads."""
    for k in _THREAD_VARS:
        os.environ[k] = str(threads)
    import torch
    torch.set_num_threads(threads)


def _run_parallel(cfgs, store, template, kw, progress, log, jobs: int, threads: int | None) -> list[dict]:
    """The local executor with ``jobs`` networks at once, each kernel using ``threads`` threads.

    A pool of processes (not threads: each runs papermill's own event loop), started
    with ``spawn`` so no torch thread pool is inherited through ``fork``.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_limit_threads,
                             initargs=(threads,)) as pool:
        def submit(cfg):
            return pool.submit(execute_network, cfg, str(store.root.resolve()), template and str(template), **kw)
        return _run_futures(cfgs, store, template, kw, progress, log, submit, poll=0.2)


def _run_futures(cfgs, store, template, kw, progress, log, submit, poll: float) -> list[dict]:
    """Shared by the dask and slurm executors: bases first, a group's children once its base is done.

    ``submit(cfg) -> future`` with ``.done()`` and ``.result()`` (a dask Future or a submitit Job).
    """
    todo, results = _split_complete(cfgs, store, kw.get("notebook", True))
    bar = _bar(len(cfgs), len(cfgs) - len(todo), progress)
    running: dict = {}    # future -> cfg
    waiting: dict = {}    # base key -> children waiting for it

    def start(cfg):
        running[submit(cfg)] = cfg

    try:
        for base, kids in _groups(todo):
            if base is not None:
                start(base)
                waiting[base.key()] = kids
            else:
                for k in kids:
                    start(k)
        while running:
            finished = [f for f in list(running) if f.done()]
            if not finished:
                time.sleep(poll)
                continue
            for fut in finished:
                cfg = running.pop(fut)
                try:
                    r = fut.result()
                except Exception as e:  # the worker died (KilledWorker), the job was cancelled, ...
                    msg = f"{type(e).__name__}: {e}".splitlines()[0]
                    run_dir = store.path(cfg)
                    run_dir.mkdir(parents=True, exist_ok=True)
                    _record_failure(run_dir, cfg, f"executor: {msg}", traceback.format_exc())
                    r = _record(cfg, store, "failed", msg)
                results.append(r)
                _log_result(bar, r, progress, log)
                bar.update(1)
                bar.set_postfix_str(f"last {cfg.dataset}/{cfg.name}, {len(running)} running")
                kids = waiting.pop(cfg.key(), []) if not cfg.is_child else []
                for k in kids:
                    if r["status"] in ("done", "reused"):
                        start(k)
                    else:
                        rk = _skipped(k, store, cfg.name)
                        results.append(rk)
                        _log_result(bar, rk, progress, log)
                        bar.update(1)
    except BaseException:
        for fut in running:
            try:
                fut.cancel()
            except Exception:
                pass
        raise
    finally:
        bar.close()
    return results


def _dask_client(scheduler: str, timeout: float):
    try:
        from dask.distributed import Client
    except ImportError as e:
        raise ConfigError("--executor dask needs dask[distributed] (pip install 'dask[distributed]')") from e
    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as e:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s "
                          f"({type(e).__name__}); is `dask scheduler` running there?") from e


def _slurm_executor(folder: Path, slurm: dict):
    try:
        import submitit
    except ImportError as e:
        raise ConfigError("--executor slurm needs submitit (pip install submitit); or use --executor dask "
                          "with a dask-jobqueue SLURMCluster") from e
    ex = submitit.AutoExecutor(folder=str(folder))
    ex.update_parameters(**slurm)
    return ex


def run_grid(cfgs: list[RunConfig], store: RunStore | str | Path | None = None, *,
             executor: str = "local", scheduler: str | None = None, client=None,
             template=None, data_root=None, device: str = "auto", timeout: float | None = None,
             scheduler_timeout: float = 10.0, slurm: dict | None = None, progress: bool = True,
             log=print, jobs: int = 1, threads: int | None = None, notebooks: bool = True) -> GridReport:
    """Execute every network of ``cfgs`` (see :func:`expand_grid`) and store its notebook and numbers.

    Complete networks are skipped; a data set's base runs before its children,
    which reuse it (a base missing from ``cfgs`` is added); a failure is recorded
    (``error.json`` + the executed notebook) and the grid goes on (children of a
    failed base are reported as skipped).

    Args:
        cfgs: the networks.
        store: RunStore or its root (default ``$TRIAGE_RUNS`` or ``./runs``).
        executor: ``local`` (this machine), ``dask`` or ``slurm``.
        scheduler: Dask scheduler address (``tcp://host:8786``) for ``executor="dask"``.
        client: an existing ``dask.distributed.Client`` (instead of ``scheduler``).
        template: template notebook (default :func:`default_template`).
        data_root, device: passed to every notebook.
        timeout: seconds one notebook cell may run (None: unlimited).
        scheduler_timeout: seconds to wait for the Dask scheduler.
        slurm: submitit parameters for ``executor="slurm"`` (e.g. ``{"timeout_min": 600,
            "slurm_partition": "gpu", "gpus_per_node": 1}``).
        progress: tqdm bar (networks done / total, current network).
        log: where one-line messages go when ``progress`` is off.
        jobs: networks at once with the local executor (default 1: one after another).
        threads: torch threads per network when ``jobs > 1`` (default: cores // jobs).
        notebooks: store an executed copy of the template beside every run (False: run
            :func:`triage.run` directly; ``triage notebook RUN`` renders one later).

    Returns:
        GridReport (``.ok``, ``.failed``, ``.summary()``).

    Raises:
        ConfigError: bad executor, template, unreachable scheduler, incompatible store
            folder; raised before any network runs.

    Example:
        >>> report = run_grid(expand_grid("mnist", "smoke"), "runs")      # doctest: +SKIP
        >>> report.summary()                                              # doctest: +SKIP
        '31 networks: 31 trained, 0 reused'
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    for name, value in (("jobs", jobs), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if jobs > 1 and executor != "local":
        raise ConfigError(f"jobs applies to the local executor; with {executor}, start more workers")
    store = store if isinstance(store, RunStore) else RunStore(store) if store is not None else RunStore()
    cfgs = _with_bases(list(cfgs))
    template = _preflight(cfgs, store, template, notebooks)
    kw = dict(data_root=data_root, device=device, timeout=timeout, notebook=notebooks,
              results_root=None if store.results is None else str(store.results.resolve()))
    if executor == "local" and jobs > 1:
        results = _run_parallel(cfgs, store, template, kw, progress, log, jobs, threads)
    elif executor == "local":
        results = _run_local(cfgs, store, template, kw, progress, log)
    elif executor == "dask":
        own = client is None
        if own:
            if not scheduler:
                raise ConfigError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
            client = _dask_client(scheduler, scheduler_timeout)
        try:
            def submit(cfg):
                # A meaningful key shows in the dashboard; two clients submitting the same
                # network share one task. Bases first (priority) when workers are scarce.
                return client.submit(execute_network, cfg, str(store.root.resolve()), template and str(template),
                                     key=f"triage-{cfg.dataset}-{cfg.name}-{cfg.key()}",
                                     priority=0 if cfg.is_child else 10, pure=False, **kw)
            results = _run_futures(cfgs, store, template, kw, progress, log, submit, poll=0.5)
        finally:
            if own:
                client.close()
    else:
        ex = _slurm_executor(store.root / ".submitit", dict(slurm or {}))
        results = _run_futures(cfgs, store, template, kw, progress, log,
                               lambda cfg: ex.submit(execute_network, cfg, str(store.root.resolve()),
                                                     template and str(template), **kw), poll=10.0)
    order = {c.key(): i for i, c in enumerate(cfgs)}
    results.sort(key=lambda r: order.get(r["key"], len(order)))
    return GridReport(results, store.root)


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


# ----------------------------------------------------------------------------- notebook side

def glue_summary(run_dir: Path | str, display: bool = False):
    """Glue a run's summary numbers into the executing notebook and return them as a table.

    The names are GLUED (``max_test_acc``, ``epochs_to_99pct``, ``key``, ...);
    the book cites them with ``{glue:}`` and :func:`notebook_scraps` reads them back.

    Example (in the template):
        >>> glue_summary(run_dir)                                  # doctest: +SKIP
    """
    import pandas as pd
    from myst_nb import glue
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    meta = json.loads((run_dir / "config.json").read_text())
    values = {**{k: summary.get(k) for k in GLUED}, "name": meta["name"], "scheme": meta["scheme"]}
    for name, value in values.items():
        glue(name, value, display=display)
    return pd.Series(values, name=f"{values['dataset']} {values['name']}").to_frame()


def notebook_scraps(path: Path | str) -> dict:
    """The values glued into an executed notebook (``myst_nb.glue``), by name.

    Plain values (numbers, strings, None) come back as Python objects; others as their
    text/plain repr.
    """
    import nbformat
    nb = nbformat.read(Path(path), as_version=4)
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if o.get("output_type") != "display_data" or not meta:
                continue
            text = o.get("data", {}).get(meta.get("mime_prefix", "") + "text/plain")
            if text is None:
                continue
            try:
                out[meta["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                out[meta["name"]] = text
    return out


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


def _status_main(args) -> int:
    import pandas as pd
    cfgs = _cfgs_from_args(args, args.dataset or ["all"])
    store = RunStore(args.out) if args.out else RunStore()
    st = grid_status(cfgs, store)
    counts = status_counts(st)
    print(f"profile {args.profile}, seeds {' '.join(map(str, args.seeds))}, store {store.root}")
    print(counts.to_string())
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
