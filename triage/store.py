"""One store for everything that is computed once and reused: runs and analyses, written atomically.

Reason to change: how a stored result is addressed, laid out on disk or checked for completeness.

One class, :class:`Store`, holds both kinds of entries below its ``root``; each is addressed by
a hash of everything that determines it, so a rerun finds and reuses finished work:

* **Runs**, addressed by their :class:`~triage.config.RunConfig`: one trained network per folder
  ``<root>/<profile>/<dataset>/<name>-<config key>/`` (:meth:`Store.path` of the config: config.json,
  metrics.csv, summary.json written last, weights.pt, a checkpoint while training). A finished
  run is exported to ``<results>/<profile>/runs/<dataset>/<name>-<key>/`` (:meth:`Store.export_path`,
  :func:`export_run`); :meth:`Store.find` and :meth:`Store.is_done` look in both.
* **Analyses**, addressed by a spec dict: what is computed from a run (:meth:`Store.get`,
  :meth:`Store.put`, :meth:`Store.entries`). An entry is a folder ``<root>/<where...>/<address>/``
  (:meth:`Store.path` of the spec) holding whatever files its writer puts there and a marker,
  ``entry.json``::

    {"key": <address>, "spec": <the spec>, "meta": <free-form>, "files": {<name>: {"bytes", "sha256"}}}

``RunStore`` and ``ResultStore`` are compatibility names for :class:`Store` (``RunStore(root,
results)`` is ``Store(root, results)``; ``ResultStore(root)`` is ``Store(root, results=None)``).

* **Address.** A run's address is its config key (:meth:`RunConfig.key`). An analysis's,
  ``address(spec)``, is the first :data:`KEY_LENGTH` hex digits of the SHA-256 of the spec as
  canonical JSON (sorted keys, no spaces, tuples as lists). The spec names everything that
  determines the result: the analysis and its format version, its parameters, the model's
  identity (a run's name and config key), the data set and split, the batch size and how many
  images are used (batch counts only mean something with a batch size). Two specs that differ
  anywhere get different addresses; the ``where`` path before the address (e.g.
  ``profile/dataset/run``) is only for people browsing the folder.
* **Atomic.** Every file is written to a temporary name and renamed into place. An analysis
  writer fills a fresh hidden folder beside the final one, writes the marker last, and renames
  the folder into place in one ``os.replace``: a reader sees the whole entry or none. A failed
  writer leaves nothing behind. A run writes summary.json last, and its export likewise.
* **Checked.** :meth:`Store.get` returns an entry only if its marker parses, names this
  spec and address, and every file it lists is there with its recorded size and hash; a
  partial or corrupt entry reads as missing, so the caller recomputes it (and :meth:`Store.put`
  replaces it). A run without summary.json (and, in the run store, weights.pt) is not done.

    >>> store = Store(tmp, results=None)                                   # doctest: +SKIP
    >>> store.path(cfg)                                  # a run: <tmp>/smoke/mnist/base-<key>  # doctest: +SKIP
    >>> spec = {"analysis": "demo", "run": "base-0123", "batch_size": 256}
    >>> store.put(spec, lambda d: (d / "t.csv").write_text("a\\n1\\n"), where=("cpu", "mnist"))  # doctest: +SKIP
    >>> store.get(spec, where=("cpu", "mnist")).path.name == address(spec)  # doctest: +SKIP
    True
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple

import torch

from ._version import __version__
from .config import _FORMAT2_DEFAULTS, ConfigError, RunConfig

__all__ = ["KEY_LENGTH", "MARKER", "canonical", "address", "atomic_write_bytes", "atomic_write_json",
           "Entry", "Store", "ResultStore", "RunStore", "default_runs_root", "default_results_root", "export_run",
           "STORE_FORMAT", "EXPORTED", "METRIC_FIELDS"]

KEY_LENGTH = 10       # hex digits of the address: 40 bits, ample for the few entries of a run folder
MARKER = "entry.json"  # written last: an entry without it (or with a wrong one) does not exist


def _plain(obj):
    """``obj`` with tuples as lists and every mapping key a string: what JSON would give back."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a spec holds JSON values only (str, number, bool, None, lists, dicts), got {obj!r}")


def canonical(spec: dict) -> str:
    """The spec as canonical JSON: sorted keys, no spaces, tuples as lists (TypeError on anything else)."""
    return json.dumps(_plain(spec), sort_keys=True, separators=(",", ":"), allow_nan=False)


def address(spec: dict) -> str:
    """The address of ``spec``: hex SHA-256 of :func:`canonical`, first :data:`KEY_LENGTH` digits."""
    return hashlib.sha256(canonical(spec).encode()).hexdigest()[:KEY_LENGTH]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of one.

    The bytes go to a hidden temporary file in the same folder (so the rename stays on one file
    system), are flushed to disk, and the file is renamed over ``path``; on any error the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as f:
        tmp = Path(f.name)
    try:
        tmp.chmod(0o666 & ~_umask())   # NamedTemporaryFile makes 0600 files; results are shared files
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path, obj) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as indented, key-sorted JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Entry(NamedTuple):
    """A complete stored result: its folder, the spec it was stored under and its free-form meta."""
    path: Path
    spec: dict
    meta: dict


# ----------------------------------------------------------------------------- the store

def default_runs_root() -> Path:
    """``$TRIAGE_RUNS`` if set; else ``<checkout>/runs`` when working inside a triage
    checkout (so the book's notebooks, executed in ``book/``, share the CLI's store);
    else ``./runs``."""
    env = os.environ.get("TRIAGE_RUNS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    cwd = Path.cwd().resolve()
    if (repo / "pyproject.toml").is_file() and (cwd == repo or repo in cwd.parents):
        return repo / "runs"
    return Path("runs")


def default_results_root() -> Path:
    """``$TRIAGE_RESULTS/triage`` if set, else ``<checkout>/results/triage``."""
    env = os.environ.get("TRIAGE_RESULTS")
    return Path(env) / "triage" if env else Path(__file__).resolve().parents[1] / "results" / "triage"


def stored_profiles(root=None) -> list[str]:
    """Profiles with exported results under ``root``, in the order of ``config.PROFILES``."""
    from .config import PROFILES
    root = Path(root) if root is not None else default_results_root()
    return [p for p in PROFILES if (root / p / "runs.csv").is_file()]


def default_profile(root=None) -> str:
    """The book's default: ``campaign`` (the converged reproduction) when its results are
    stored, else ``cpu``, else ``smoke`` (recomputed)."""
    stored = stored_profiles(root)
    return next((p for p in ("campaign", "cpu") if p in stored), "smoke")


def _run_name(cfg: RunConfig) -> str:
    """A run folder's name: the network's name and its config key."""
    return f"{cfg.name}-{cfg.key()}"


@dataclass
class Store:
    """Runs (by config) and analyses (by spec) below ``root``, hash-addressed and written atomically.

    See the module docstring for the layout. A finished run is exported (:func:`export_run`) to
    ``results/<profile>/runs/<dataset>/<name>-<key>/``: small files that are committed, so a
    fresh clone (where ``root`` is empty) counts the run as done, and a child can start from an
    exported base's weights. Analyses are never exported.

    Args:
        root: the store's folder (None: :func:`default_runs_root`); created on the first write.
        results: where finished runs are exported; None exports nothing; ``"auto"`` exports the
            checkout's own store (``runs/``) into ``results/triage`` and any other store nowhere
            unless ``$TRIAGE_RESULTS`` is set.

    Example:
        >>> store = Store("runs")                                            # doctest: +SKIP
        >>> store.find(cfg)                  # a finished run's folder, or None   # doctest: +SKIP
        >>> store.get(spec, where=("cpu", "mnist", "base-1da443184428"))     # doctest: +SKIP
    """
    root: Path | None = None
    results: Path | str | None = "auto"

    def __post_init__(self):
        explicit = self.root is not None or bool(os.environ.get("TRIAGE_RUNS"))
        self.root = Path(self.root) if self.root is not None else default_runs_root()
        if isinstance(self.results, str) and self.results == "auto":
            # The checkout's own store exports into the checkout's results/; a store chosen
            # elsewhere (--out, $TRIAGE_RUNS: tests, CI, scratch runs) exports only when asked
            # (results=..., $TRIAGE_RESULTS), so it never mixes into the committed results.
            self.results = default_results_root() if (not explicit or os.environ.get("TRIAGE_RESULTS")) else None
        self.results = Path(self.results) if self.results is not None else None

    def path(self, what: RunConfig | Mapping, where: Iterable[str] = ()) -> Path:
        """The folder of a run (``what`` a RunConfig) or of an analysis entry (``what`` a spec
        dict, filed below ``where``), whether or not it is stored."""
        if isinstance(what, Mapping):
            return self.entry_path(what, where)
        if tuple(where):
            raise TypeError("where= places analysis entries; a run's folder follows from its config alone")
        return self.run_path(what)

    # -- runs, addressed by their config

    def run_path(self, cfg: RunConfig) -> Path:
        """The run store's folder of ``cfg``: ``<root>/<profile>/<dataset>/<name>-<key>``."""
        return self.root / cfg.profile / cfg.dataset / _run_name(cfg)

    def export_path(self, cfg: RunConfig) -> Path | None:
        """Where ``cfg``'s finished run is exported, or None if this store exports nothing."""
        if self.results is None:
            return None
        return self.results / cfg.profile / "runs" / cfg.dataset / _run_name(cfg)

    def is_done(self, cfg: RunConfig) -> bool:
        return self.find(cfg) is not None

    def find(self, cfg: RunConfig) -> Path | None:
        """The folder of the finished run: the run store's, else its export; None if neither."""
        d = self.run_path(cfg)
        if (d / "summary.json").exists() and (d / "weights.pt").exists():
            return d
        e = self.export_path(cfg)
        if e is not None and (e / "summary.json").exists():
            return e
        return None

    # -- analyses, addressed by a spec

    def entry_path(self, spec: Mapping, where: Iterable[str] = ()) -> Path:
        """The folder of ``spec``'s entry below ``<root>/<where...>``, whether or not it is stored."""
        return self.root.joinpath(*map(str, where), address(spec))

    @staticmethod
    def read_entry(folder) -> Entry | None:
        """The entry stored in ``folder``, or None if it is missing, partial or corrupt."""
        folder = Path(folder)
        try:
            marker = json.loads((folder / MARKER).read_text())
            spec, files = marker["spec"], marker["files"]
            if marker["key"] != folder.name or address(spec) != folder.name:
                return None
            for name, want in files.items():
                f = folder / name
                if not f.is_file() or f.stat().st_size != want["bytes"] or _digest(f) != want["sha256"]:
                    return None
            return Entry(folder, spec, marker.get("meta", {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def get(self, spec: Mapping, where: Iterable[str] = ()) -> Entry | None:
        """The complete entry of ``spec``, or None (never stored, partial or corrupt: recompute it)."""
        entry = self.read_entry(self.entry_path(spec, where))
        return entry if entry is not None and canonical(entry.spec) == canonical(spec) else None

    def put(self, spec: Mapping, write: Callable[[Path], None], where: Iterable[str] = (),
            meta: dict | None = None) -> Entry:
        """Store a result: ``write(folder)`` fills a fresh folder, which then replaces the entry whole.

        Args:
            spec: what determines the result (JSON values only); its address names the folder.
            write: called with an empty temporary folder; writes the entry's files into it
                (any names but :data:`MARKER`; subfolders allowed).
            where: folders between the root and the address, for people browsing the store.
            meta: free-form JSON facts about the result (timings, versions, base accuracy).

        Returns:
            The stored :class:`Entry`. If ``write`` raises, nothing is stored and the previous
            entry (if any) is left as it was.
        """
        final = self.entry_path(spec, where)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
        try:
            tmp.chmod(0o777 & ~_umask())   # mkdtemp makes 0700 folders
            write(tmp)
            if (tmp / MARKER).exists():
                raise ValueError(f"{MARKER} is the store's marker; write() must not create it")
            files = {p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": _digest(p)}
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
            meta = json.loads(json.dumps(meta or {}, default=str))   # numpy scalars, paths: as text
            atomic_write_json(tmp / MARKER, {"key": final.name, "spec": _plain(spec), "meta": meta,
                                             "files": files})
            self._swap_in(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return Entry(final, _plain(spec), meta)

    @staticmethod
    def _swap_in(tmp: Path, final: Path) -> None:
        """Rename ``tmp`` to ``final``; a stale (partial or corrupt) ``final`` is moved away first."""
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.{os.getpid()}.old")
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def entries(self, where: Iterable[str] = (), **match) -> list[Entry]:
        """Complete analysis entries directly below ``<root>/<where...>`` (glob patterns allowed)
        whose spec has the ``match`` values, newest first (by the marker's modification time).
        Run folders have no marker and are never listed.

        Example:
            >>> store.entries(("cpu", "cifar10", "base-1da443184428"), analysis="critical")  # doctest: +SKIP
        """
        pattern = "/".join([*map(str, where), "*", MARKER])   # glob patterns in ``where`` match several
        found = [e for m in self.root.glob(pattern) if (e := self.read_entry(m.parent)) is not None
                 and all(e.spec.get(k) == v for k, v in match.items())]
        return sorted(found, key=lambda e: (e.path / MARKER).stat().st_mtime, reverse=True)


# Compatibility names, from when runs and analyses had a class each; new code says ``Store``.
RunStore = Store


def ResultStore(root) -> Store:  # noqa: N802  (reads as the class it once was)
    """Compatibility name: ``Store(root, results=None)``, the store of analyses below ``root``."""
    return Store(root, results=None)


# ----------------------------------------------------------------------------- run folders

def _git_hash(here: Path | None = None) -> str:
    try:
        here = Path(here) if here is not None else Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        if out.returncode != 0:
            return "unknown"
        # results/ holds exported outputs, not code: re-exporting over committed results must
        # not mark the code that produced them as modified.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", ":(top,exclude)results"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def atomic_torch_save(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                 "lr", "seconds", "cpu_seconds")
STORE_FORMAT = 1  # bump when the layout of a run folder changes incompatibly
# What a finished run exports into results/ (small, committed); weights only for bases,
# which later children (on another machine) and the analyses start from.
EXPORTED = ("config.json", "summary.json", "metrics.csv", "block1.npz")


def _check_folder(run_dir: Path, cfg: RunConfig) -> None:
    """Refuse a folder that belongs to another config (never mix two runs' files)."""
    cfile = run_dir / "config.json"
    if cfile.exists():
        try:
            meta = json.loads(cfile.read_text())
            other = meta["config"]
            fmt = meta.get("store_format")
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{cfile} is not a triage config; choose an empty folder") from e
        if fmt != STORE_FORMAT:
            raise ConfigError(f"{run_dir} was written by an incompatible triage store format "
                              f"({fmt}, this version reads {STORE_FORMAT}); use another --out")
        other = {**_FORMAT2_DEFAULTS, **other}   # a format-1 config has none of these fields
        try:
            same = RunConfig(**other).key() == cfg.key()   # fields that do not act are not compared
        except (TypeError, ConfigError):
            same = False
        if not same:
            diff = sorted(k for k in other if other.get(k) != dataclasses.asdict(cfg).get(k))
            raise ConfigError(f"{run_dir} holds a run of another config (differs in: {', '.join(diff)}); "
                              "choose another folder")


def _prepare_folder(run_dir: Path, cfg: RunConfig, device: torch.device) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the run folder {run_dir}: {e.strerror or e}") from e
    _check_folder(run_dir, cfg)
    if not (run_dir / "config.json").exists():
        atomic_write_json(run_dir / "config.json", {
            "config": dataclasses.asdict(cfg), "key": cfg.key(), "name": cfg.name,
            "scheme": cfg.scheme, "seed": cfg.seed, "triage_version": __version__,
            "git_hash": _git_hash(), "torch_version": torch.__version__, "device": str(device),
            # CPU results differ in the last bits between thread counts; record it.
            "threads": torch.get_num_threads(),
            "store_format": STORE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, restval="")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(run_dir / "metrics.csv", buf.getvalue().encode())


def _save_npz(path: Path, **arrays) -> None:
    import numpy as np
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def export_run(run_dir: Path, dest: Path) -> Path:
    """Copy a finished run's small files (and a base's or control's weights) to ``dest``.

    This is what is committed (``results/<profile>/runs/...``): enough for the book, the
    claims and a fresh clone to count the run as done; children's and controls' weights
    stay in the run store (too large to commit; their analyses are computed when they finish).
    """
    import shutil
    run_dir, dest = Path(run_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    meta = json.loads((run_dir / "config.json").read_text())
    is_base = meta["config"]["block"] == 0 and not meta["config"].get("control", False)
    names = list(EXPORTED) + (["weights.pt"] if is_base else [])
    for name in names:
        if (run_dir / name).exists() and name != "summary.json":
            tmp = dest / f".{name}.tmp"
            shutil.copyfile(run_dir / name, tmp)
            os.replace(tmp, dest / name)
    shutil.copyfile(run_dir / "summary.json", dest / ".summary.json.tmp")
    os.replace(dest / ".summary.json.tmp", dest / "summary.json")   # last: marks the export complete
    return dest
