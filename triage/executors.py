"""How the grid runs many networks: the executors (local, jobs, dask, slurm) and :func:`run_grid`.

One reason to change: the way networks are scheduled (one after another or side by side,
on one machine or a cluster; a data set's base before its children; the report). *What*
runs (the configs of the grid, its status, its CLI) is :mod:`triage.grid`; how *one*
network is executed (its lock, papermill or a direct :func:`triage.run`, its failure
record) is :mod:`triage.execute`, whose names stay importable from here.

Every executor runs :func:`triage.execute.execute_network` once per network. ``local``
(default) runs the networks one after another, each with all
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
    >>> from triage.executors import run_grid
    >>> from triage.grid import expand_grid
    >>> report = run_grid(expand_grid("mnist", profile="smoke"))      # doctest: +SKIP
    >>> report.summary()                                              # doctest: +SKIP
    '31 networks: 31 trained, 0 reused'
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .execute import (ERROR_FILE, LOCK_FILE, RunLock, _record, _record_failure, execute_network,  # noqa: F401
                      is_complete)
from .experiments import ConfigError, RunConfig, RunStore, _check_folder
from .template import NOTEBOOK, _THREAD_VARS, check_template, default_template

__all__ = ["EXECUTORS", "ERROR_FILE", "LOCK_FILE", "RunLock", "is_complete", "execute_network",
           "GridReport", "run_grid"]

EXECUTORS = ("local", "dask", "slurm")


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
    """One network at a time; one that another process is executing is left for later.

    Two ``triage grid`` processes on one store (two workers of one thread each are
    faster than one of two threads here) would otherwise queue behind each other's
    lock. A network found busy, and the children of a busy base, are put back; a pass
    that finds everything busy waits for the first one. The report keeps grid order.
    """
    todo, results = _split_complete(cfgs, store, kw.get("notebook", True))
    order = {c.key(): i for i, c in enumerate(cfgs)}
    bar = _bar(len(cfgs), len(cfgs) - len(todo), progress)
    say = bar.write if progress else log
    failed_bases: dict[str, str] = {}
    queue = [c for base, kids in _groups(todo) for c in ([base] if base is not None else []) + kids]
    wait_for_first, told = False, set()
    try:
        while queue:
            later, busy_bases = [], set()
            for i, cfg in enumerate(queue):
                pk = cfg.parent().key()
                if cfg.is_child and pk in failed_bases:
                    r = _skipped(cfg, store, failed_bases[pk])
                elif cfg.is_child and pk in busy_bases:
                    later.append(cfg)   # its base is training elsewhere
                    continue
                else:
                    bar.set_postfix_str(f"{cfg.dataset}/{cfg.name} seed {cfg.seed}")

                    def on_wait(h, cfg=cfg):
                        say(f"{cfg.dataset}/{cfg.name}: waiting for pid {h.get('pid')} on {h.get('host')}, "
                            "which is executing it")
                    r = execute_network(cfg, store.root, template, on_wait=on_wait,
                                        wait=wait_for_first and i == 0, **kw)
                    if r["status"] == "busy":
                        later.append(cfg)
                        if not cfg.is_child:
                            busy_bases.add(cfg.key())
                        if cfg.key() not in told:
                            told.add(cfg.key())
                            say(f"{cfg.dataset}/{cfg.name} (seed {cfg.seed}): {r['error']}; "
                                "going on with the others")
                        continue
                    if not cfg.is_child and r["status"] == "failed":
                        failed_bases[cfg.key()] = cfg.name
                results.append(r)
                _log_result(bar, r, progress, log)
                bar.update(1)
            wait_for_first = len(later) == len(queue)   # nothing else to do: wait for the first
            queue = later
    finally:
        bar.close()
    return sorted(results, key=lambda r: order[r["key"]])


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
