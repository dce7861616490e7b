"""The per-network template notebook's contract: its parameters, what it glues, how its kernel starts.

One reason to change: the template notebook (``triage/templates/triage_experiment.ipynb``,
linked from ``book/templates/``) or the way papermill runs it. The grid executes one copy
of the template per network (:func:`triage.execute.execute_network`); this module says
which parameters the template's ``parameters`` cell must define (TEMPLATE_PARAMETERS) and
gets (:func:`notebook_parameters`), which numbers the template glues
(:func:`glue_summary`) and the grid reads back (:func:`notebook_scraps`), and which
kernel environment a Dask worker gives it.

Example:
    >>> from triage.template import check_template, default_template
    >>> check_template(default_template()).name
    'triage_experiment.ipynb'
"""
from __future__ import annotations

import ast
import dataclasses
import json
import os
import sys
from pathlib import Path

from .experiments import ConfigError, RunConfig, make_config

__all__ = ["NOTEBOOK", "PARTIAL_NOTEBOOK", "TEMPLATE_PARAMETERS", "GLUED", "default_template",
           "check_template", "notebook_parameters", "glue_summary", "notebook_scraps"]

NOTEBOOK = "notebook.ipynb"
PARTIAL_NOTEBOOK = ".notebook.partial.ipynb"
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

# ----------------------------------------------------------------------------- kernel

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
