"""One hash-addressed store for results that are computed once and reused, written atomically.

Reason to change: how a stored result is addressed, laid out on disk or checked for completeness.

An entry is a folder ``<root>/<where...>/<address>/`` holding whatever files its writer puts
there and a marker, ``entry.json``::

    {"key": <address>, "spec": <the spec>, "meta": <free-form>, "files": {<name>: {"bytes", "sha256"}}}

* **Address.** ``address(spec)`` is the first :data:`KEY_LENGTH` hex digits of the SHA-256 of
  the spec as canonical JSON (sorted keys, no spaces, tuples as lists). The spec names
  everything that determines the result: the analysis and its format version, its
  parameters, the model's identity (a run's name and config key), the data set and split,
  the batch size and how many images are used (batch counts only mean something with a
  batch size). Two specs that differ anywhere get different addresses; the ``where`` path
  before the address (e.g. ``profile/dataset/run``) is only for people browsing the folder.
* **Atomic.** A writer fills a fresh hidden folder beside the final one, writes the marker
  last, and renames the folder into place in one ``os.replace``: a reader sees the whole
  entry or none. A failed writer leaves nothing behind.
* **Checked.** :meth:`ResultStore.get` returns an entry only if its marker parses, names this
  spec and address, and every file it lists is there with its recorded size and hash; a
  partial or corrupt entry reads as missing, so the caller recomputes it (and :meth:`put`
  replaces it).

    >>> store = ResultStore(tmp)                                           # doctest: +SKIP
    >>> spec = {"analysis": "demo", "run": "base-0123", "batch_size": 256}
    >>> store.put(spec, lambda d: (d / "t.csv").write_text("a\\n1\\n"), where=("cpu", "mnist"))  # doctest: +SKIP
    >>> store.get(spec, where=("cpu", "mnist")).path.name == address(spec)  # doctest: +SKIP
    True
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

__all__ = ["KEY_LENGTH", "MARKER", "canonical", "address", "atomic_write_bytes", "atomic_write_json",
           "Entry", "ResultStore"]

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


class ResultStore:
    """Hash-addressed, atomically written results below ``root`` (see the module docstring).

    Args:
        root: the store's folder (created on the first :meth:`put`).

    Example:
        >>> store = ResultStore("results/autopsy")                          # doctest: +SKIP
        >>> hit = store.get(spec, where=("cpu", "mnist", "base-1da443184428"))  # doctest: +SKIP
    """

    def __init__(self, root):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def path(self, spec: dict, where: Iterable[str] = ()) -> Path:
        """The folder of ``spec``'s entry, whether or not it is stored."""
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

    def get(self, spec: dict, where: Iterable[str] = ()) -> Entry | None:
        """The complete entry of ``spec``, or None (never stored, partial or corrupt: recompute it)."""
        entry = self.read_entry(self.path(spec, where))
        return entry if entry is not None and canonical(entry.spec) == canonical(spec) else None

    def put(self, spec: dict, write: Callable[[Path], None], where: Iterable[str] = (),
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
        final = self.path(spec, where)
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
        """Complete entries directly below ``<root>/<where...>`` (glob patterns allowed) whose spec has
        the ``match`` values, newest first (by the marker's modification time).

        Example:
            >>> store.entries(("cpu", "cifar10", "base-1da443184428"), analysis="critical")  # doctest: +SKIP
        """
        pattern = "/".join([*map(str, where), "*", MARKER])   # glob patterns in ``where`` match several
        found = [e for m in self.root.glob(pattern) if (e := self.read_entry(m.parent)) is not None
                 and all(e.spec.get(k) == v for k, v in match.items())]
        return sorted(found, key=lambda e: (e.path / MARKER).stat().st_mtime, reverse=True)
