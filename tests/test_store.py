"""Tests of triage.store: addresses worked out by hand, atomic writes, partial entries recomputed,
runs and analyses side by side in one store."""
import hashlib
import json
import os

import pytest

import triage
from triage import store as st
from triage.config import make_config

SPEC = {"analysis": "autopsy", "format": 1, "run": "base-1da443184428", "dataset": "mnist", "split": "test",
        "batch_size": 256, "params": {"max_batches": 8, "ks": (2, 4)}}


def write_table(folder):
    (folder / "t.csv").write_text("a,b\n1,2\n")


def test_address_is_the_hash_of_the_canonical_json():
    # by hand: sorted keys, no spaces, the tuple as a list
    text = ('{"analysis":"autopsy","batch_size":256,"dataset":"mnist","format":1,'
            '"params":{"ks":[2,4],"max_batches":8},"run":"base-1da443184428","split":"test"}')
    assert st.canonical(SPEC) == text
    assert st.address(SPEC) == hashlib.sha256(text.encode()).hexdigest()[:10]
    # the same parameters in another order, as a list instead of a tuple: the same address
    same = {"params": {"ks": [2, 4], "max_batches": 8}, **{k: v for k, v in reversed(SPEC.items()) if k != "params"}}
    assert st.address(same) == st.address(SPEC)


@pytest.mark.parametrize("change", [{"batch_size": 128}, {"run": "base-ffffffffffff"}, {"split": "val"},
                                    {"params": {"max_batches": 4, "ks": (2, 4)}}, {"format": 2}])
def test_anything_that_determines_the_result_changes_the_address(change):
    assert st.address({**SPEC, **change}) != st.address(SPEC)


def test_specs_hold_json_values_only():
    with pytest.raises(TypeError, match="JSON values only"):
        st.address({"root": object()})
    with pytest.raises(ValueError):
        st.address({"x": float("nan")})


def test_put_then_get(tmp_path):
    s = st.ResultStore(tmp_path)
    where = ("cpu", "mnist", "base-1da443184428")
    assert s.get(SPEC, where) is None
    e = s.put(SPEC, write_table, where, meta={"seconds": 1.5})
    assert e.path == tmp_path / "cpu" / "mnist" / "base-1da443184428" / st.address(SPEC)
    got = s.get(SPEC, where)
    assert got.path == e.path and got.meta == {"seconds": 1.5} and (got.path / "t.csv").read_text() == "a,b\n1,2\n"
    marker = json.loads((e.path / st.MARKER).read_text())
    assert marker["files"] == {"t.csv": {"bytes": 8, "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest()}}
    assert s.get({**SPEC, "batch_size": 128}, where) is None      # another batch size: not this entry
    assert [x.path for x in s.entries(where, analysis="autopsy")] == [e.path]
    assert s.entries(where, analysis="critical") == []
    assert sorted(p.name for p in e.path.parent.iterdir()) == [st.address(SPEC)]   # no temporary left


def test_a_failed_write_leaves_nothing_and_keeps_the_old_entry(tmp_path):
    s = st.ResultStore(tmp_path)

    def half(folder):
        (folder / "t.csv").write_text("a,b\n")
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        s.put(SPEC, half)
    assert s.get(SPEC) is None and list(tmp_path.iterdir()) == []     # no partial folder visible
    s.put(SPEC, write_table)
    with pytest.raises(RuntimeError):
        s.put(SPEC, half)
    assert (s.get(SPEC).path / "t.csv").read_text() == "a,b\n1,2\n"   # the old entry, untouched
    assert [p.name for p in tmp_path.iterdir()] == [st.address(SPEC)]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "marker", "no_marker"])
def test_a_partial_or_corrupt_entry_is_missing_and_replaced(tmp_path, damage):
    s = st.ResultStore(tmp_path)
    path = s.put(SPEC, write_table).path
    if damage == "truncate":
        (path / "t.csv").write_text("a,b\n")
    elif damage == "flip":
        (path / "t.csv").write_text("a,b\n1,3\n")             # same size, other bytes
    elif damage == "delete":
        (path / "t.csv").unlink()
    elif damage == "marker":
        (path / st.MARKER).write_text('{"key": "')
    else:
        (path / st.MARKER).unlink()
    assert s.get(SPEC) is None and s.entries() == []
    s.put(SPEC, write_table)                                   # recomputed: replaces the damaged folder
    assert s.get(SPEC) is not None
    assert [p.name for p in tmp_path.iterdir()] == [st.address(SPEC)]


def test_an_entry_moved_to_another_address_is_not_returned(tmp_path):
    s = st.ResultStore(tmp_path)
    path = s.put(SPEC, write_table).path
    other = {**SPEC, "batch_size": 128}
    os.replace(path, s.path(other))
    assert s.get(other) is None and s.get(SPEC) is None


def test_the_marker_name_is_reserved(tmp_path):
    with pytest.raises(ValueError, match="marker"):
        st.ResultStore(tmp_path).put(SPEC, lambda d: (d / st.MARKER).write_text("{}"))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_bytes_keeps_the_old_file_on_error(tmp_path, monkeypatch):
    f = tmp_path / "a.json"
    st.atomic_write_json(f, {"x": 1})
    assert json.loads(f.read_text()) == {"x": 1}

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(st.os, "replace", fail)
    with pytest.raises(OSError):
        st.atomic_write_bytes(f, b"half")
    assert json.loads(f.read_text()) == {"x": 1} and [p.name for p in tmp_path.iterdir()] == ["a.json"]


# ----------------------------------------------------------------------------- runs and analyses in one store

def test_one_store_holds_a_run_and_an_analysis_side_by_side(tmp_path):
    s = st.Store(tmp_path / "store", results=tmp_path / "exports")
    cfg = make_config("mnist", profile="smoke")                     # the smoke MNIST base
    run = f"base-{cfg.key()}"
    run_dir = tmp_path / "store" / "smoke" / "mnist" / run          # by hand: <root>/<profile>/<dataset>/<name>-<key>
    export = tmp_path / "exports" / "smoke" / "runs" / "mnist" / run
    assert s.path(cfg) == s.run_path(cfg) == run_dir and s.export_path(cfg) == export
    assert s.find(cfg) is None and not s.is_done(cfg)

    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text("{}")
    assert not s.is_done(cfg)                                       # no weights yet: not done in the run store
    (run_dir / "weights.pt").write_bytes(b"w")
    assert s.find(cfg) == run_dir and s.is_done(cfg)

    where = ("autopsy", "smoke", "mnist", run)                       # the analysis of that run, same root
    entry = tmp_path / "store" / "autopsy" / "smoke" / "mnist" / run / st.address(SPEC)
    assert s.path(SPEC, where) == s.entry_path(SPEC, where) == entry
    e = s.put(SPEC, write_table, where)
    assert s.get(SPEC, where).path == e.path and s.entries(where) == [e]
    assert s.entries(("smoke", "mnist")) == []                      # a run folder is not an analysis entry
    assert s.find(cfg) == run_dir                                   # the entry leaves the run alone
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["autopsy", "smoke"]

    (run_dir / "weights.pt").unlink()                               # a fresh clone: only the export
    assert s.find(cfg) is None
    export.mkdir(parents=True)
    (export / "summary.json").write_text("{}")
    assert s.find(cfg) == export and s.is_done(cfg)


def test_damage_to_an_analysis_in_a_shared_store_is_recomputed_and_spares_the_run(tmp_path):
    s = st.Store(tmp_path, results=None)
    cfg = make_config("mnist", profile="smoke")
    s.path(cfg).mkdir(parents=True)
    for name in ("summary.json", "weights.pt"):
        (s.path(cfg) / name).write_text("x")
    path = s.put(SPEC, write_table, ("smoke", "mnist", "a")).path
    (path / "t.csv").write_text("a,b\n1,3\n")                      # same size, other bytes
    assert s.get(SPEC, ("smoke", "mnist", "a")) is None

    def half(folder):
        (folder / "t.csv").write_text("a,b\n")
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        s.put(SPEC, half, ("smoke", "mnist", "a"))
    assert sorted(p.name for p in (tmp_path / "smoke" / "mnist").iterdir()) == ["a", f"base-{cfg.key()}"]
    assert [p.name for p in path.parent.iterdir()] == [st.address(SPEC)]   # no temporary left
    s.put(SPEC, write_table, ("smoke", "mnist", "a"))
    assert (s.get(SPEC, ("smoke", "mnist", "a")).path / "t.csv").read_text() == "a,b\n1,2\n"
    assert s.find(cfg) == s.path(cfg)


def test_a_run_is_placed_by_its_config_alone(tmp_path):
    s = st.Store(tmp_path, results=None)
    with pytest.raises(TypeError, match="config alone"):
        s.path(make_config("mnist", profile="smoke"), ("cpu",))
    assert s.export_path(make_config("mnist", profile="smoke")) is None


def test_the_compatibility_names_construct_store(tmp_path, monkeypatch):
    monkeypatch.delenv("TRIAGE_RUNS", raising=False)
    monkeypatch.delenv("TRIAGE_RESULTS", raising=False)
    assert st.RunStore is st.Store and triage.Store is st.Store and triage.RunStore is st.Store
    assert "Store" in st.__all__
    r = st.ResultStore(tmp_path)
    assert type(r) is st.Store and r == st.Store(tmp_path, results=None) and r.root == tmp_path
    assert st.RunStore(tmp_path, tmp_path / "r").results == tmp_path / "r"
    assert st.RunStore(tmp_path).results is None                     # a store chosen elsewhere exports nothing
    assert st.Store() == st.Store(st.default_runs_root(), st.default_results_root())  # the checkout's own
    monkeypatch.setenv("TRIAGE_RESULTS", str(tmp_path / "res"))
    assert st.Store(tmp_path).results == tmp_path / "res" / "triage"
    assert st.ResultStore(tmp_path).results is None                  # analyses are never exported
