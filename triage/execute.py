"""One network of the grid, executed: under its run folder's lock, by papermill or a direct :func:`triage.run`.

One reason to change: the way a single network is executed (the lock, the papermill call
or the direct run, the failure record, what counts as complete). How many networks are
scheduled (local, jobs, dask, slurm; bases before children) is :mod:`triage.executors`,
which runs :func:`execute_network` for each; the template notebook's contract is
:mod:`triage.template`.

:func:`execute_network` takes the run folder's lock, executes the template with papermill
(or calls :func:`triage.run` directly) and stores the executed notebook beside the run
(``<runs>/<profile>/<dataset>/<name>-<hash>/``: ``notebook.ipynb``, the failing cell kept;
``error.json`` only after a failure; ``.lock``, flock-held while executing;
``.notebook.partial.ipynb`` while executing). A network is *complete* when its run is done
(summary.json and weights.pt) and its notebook ran without error; a rerun skips complete
networks and resumes an interrupted training from its last checkpointed epoch
(experiments.run does that).

Example:
    >>> from triage.execute import execute_network
    >>> execute_network(cfg, "runs")["status"]                        # doctest: +SKIP
    'done'
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
import traceback
from pathlib import Path

from .experiments import RunConfig, RunStore, atomic_write_json
from .template import (NOTEBOOK, PARTIAL_NOTEBOOK, _KERNEL_ARGS, _dask_thread_vars, _kernel_manager_class,
                       default_template, notebook_parameters, notebook_scraps)

__all__ = ["ERROR_FILE", "LOCK_FILE", "RunLock", "is_complete", "execute_network"]

ERROR_FILE = "error.json"
LOCK_FILE = ".lock"


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


def execute_network(cfg: RunConfig, runs_root, template=None, *, data_root=None, device="auto",
                    timeout: float | None = None, on_wait=None, notebook: bool = True,
                    results_root=None, wait: bool = True) -> dict:
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
        wait: while another process holds the lock, wait for it (True) or return at once
            with status ``busy`` and the holder's info in ``error`` (False), so a grid can
            train other networks meanwhile.

    Returns:
        dict with ``key, dataset, name, status`` (``done`` | ``reused`` | ``failed`` |
        ``busy``), ``run_dir``, ``seconds``, ``error`` (one line or None).
    """
    store = RunStore(runs_root) if results_root is None else RunStore(runs_root, results_root)
    run_dir = store.path(cfg)
    template = Path(template) if template is not None else default_template()
    out = _record(cfg, store, "reused")
    t0 = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    if not lock.acquire(blocking=wait, on_wait=on_wait):
        h = RunLock.holder(run_dir) or {}
        out.update(status="busy", error=f"pid {h.get('pid')} on {h.get('host')} is executing it")
        return out
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


def _record(cfg: RunConfig, store: RunStore, status: str, error: str | None = None) -> dict:
    return {"key": cfg.key(), "dataset": cfg.dataset, "seed": cfg.seed, "name": cfg.name,
            "run_dir": str(store.path(cfg)), "status": status, "seconds": 0.0, "error": error}
