"""One-off: move analysis results stored before :mod:`triage.store` into the store's layout.

Reason to change: none; delete this module once no results in the old layout remain.

Before the store, each analysis kept its own cache below ``results/autopsy`` and
``results/critical``: a folder ``<profile>/<dataset>/<run>/<key>/`` with its tables and a
marker (``autopsy.json``, ``critical.json`` or ``critical_eval.json``), ``key`` hashing the
parameters alone (the autopsy's left its batch size out), and activation-maximisation images
as ``<run>/am-<key>.npz``. :func:`migrate` re-files each such result under the address of
:mod:`triage.studies`' specs -- after checking that the stored parameters hash to the old key,
so that nothing is filed under parameters it was not computed with -- copying the files
byte for byte, then removes the old copy. Results it cannot place are left where they are
and reported.

    python -m triage._migrate results/autopsy results/critical
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from . import studies
from .critical import ClassMaps, top_filters
from .store import ResultStore

# the classes activation maximisation was asked for: the book's Fig. 2 pair, either order
_AM_GUESSES = (("cat", "dog"), ("dog", "cat"))


def _old_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def _copy(files):
    def write(folder: Path) -> None:
        for f in files:
            shutil.copyfile(f, folder / f.name)
    return write


def _spec(kind: str, run: str, meta: dict) -> dict:
    params = dict(meta["params"])
    if kind == "autopsy.json":   # always computed in batches of 256 (studies.AUTOPSY_BATCH)
        return studies.autopsy_spec(run, meta["dataset"], params)
    batch_size = params.pop("batch_size", None)   # None: not recorded (critical.json of format 2)
    make = studies.critical_spec if kind == "critical.json" else studies.critical_base_spec
    return make(run, meta["dataset"], batch_size, params)


def _folders(root: Path, log) -> list[Path]:
    """Move every old-layout folder below ``root``; return the run folders that hold old AM files."""
    store = ResultStore(root)
    for kind in ("autopsy.json", "critical.json", "critical_eval.json"):
        for marker in sorted(root.glob(f"*/*/*/*/{kind}")):
            old = marker.parent
            meta = json.loads(marker.read_text())
            if _old_key(meta["params"]) != old.name:
                log(f"left {old}: its parameters do not hash to its folder name")
                continue
            profile, dataset, run = old.parts[-4:-1]
            spec = _spec(kind, run, meta)
            key = "analysis_key" if kind == "autopsy.json" else "key"
            meta = {**meta, key: store.path(spec).name, "migrated_from": f"{kind} folder {old.name}"}
            files = [f for f in sorted(old.iterdir()) if f.name != kind]
            entry = store.put(spec, _copy(files), (profile, dataset, run), meta)
            shutil.rmtree(old)
            log(f"{old} -> {entry.path}")
    return sorted({p.parent for p in root.glob("*/*/*/am-*.npz")})


def _am_files(root: Path, run_dir: Path, log) -> None:
    store = ResultStore(root)
    profile, dataset, run = run_dir.parts[-3:]
    maps_of = [e for e in store.entries((profile, dataset, run), analysis="critical")]
    for npz in sorted(run_dir.glob("am-*.npz")):
        placed = False
        for e in maps_of:
            maps = ClassMaps.from_csv(e.path / "maps.csv")
            for classes in _AM_GUESSES:
                if not all(c in maps.classes for c in classes):
                    continue
                top = {c: [int(f) for f in top_filters(maps, maps.layers[0], c, 3)["filter"]] for c in classes}
                old = {"layer": maps.layers[0], "filters": top, "steps": 128, "seed": 0, "format": 1}
                if f"am-{_old_key(old)}.npz" != npz.name:
                    continue
                params = {"layer": old["layer"], "classes": list(classes), "filters": top, "steps": 128, "seed": 0,
                          "format": 1}
                titles = [f"{c}: filter {f}" for c in classes for f in top[c]] + [f"logit '{c}'" for c in classes]
                entry = store.put(studies.am_spec(run, dataset, params),
                                  lambda d: shutil.copyfile(npz, d / "am.npz"), (profile, dataset, run),
                                  {"titles": titles, "migrated_from": npz.name})
                npz.unlink()
                log(f"{npz} -> {entry.path}")
                placed = True
                break
            if placed:
                break
        if not placed:
            log(f"left {npz}: no stored maps and class pair whose AM parameters hash to its name")


def migrate(root, log=print) -> None:
    """Re-file every old-layout result below ``root`` (``results/autopsy`` or ``results/critical``)."""
    root = Path(root)
    for run_dir in _folders(root, log):
        _am_files(root, run_dir, log)


if __name__ == "__main__":
    for r in sys.argv[1:]:
        migrate(r)
