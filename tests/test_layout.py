"""Issue 15's layout rules, checked on the source: one stated reason to change per module, no
module over 600 lines, and the analyses independent of training and the grid."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "triage"
MODULES = sorted(p for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py", "_version.py"))
# pure functions of (model, data) or of stored tables: they must not reach training or the grid
ANALYSES = ["autopsy", "robustness", "kmeans", "critical", "critical_am", "critical_distill", "critical_eval",
            "critical_exclusive", "similarity", "claims", "contrasts", "claims_tables", "findings"]
FORBIDDEN = {"experiments", "grid", "report", "executors", "execute"}


def _imports(path: Path) -> set[str]:
    """The triage modules ``path`` imports (relative or absolute), at any depth of the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level >= 1 or mod.startswith("triage"):
                name = mod.removeprefix("triage").lstrip(".").split(".")[0]
                out |= {name} if name else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("triage.")}
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_every_module_states_its_reason_to_change_and_stays_small(path):
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "reason to change" in doc.lower(), f"{path.name}: the docstring names no reason to change"
    n = len(path.read_text().splitlines())
    assert n <= 600, f"{path.name}: {n} lines"


@pytest.mark.parametrize("name", ANALYSES)
def test_analyses_do_not_import_training_or_the_grid(name):
    assert (PKG / f"{name}.py").is_file()
    assert not (_imports(PKG / f"{name}.py") & FORBIDDEN)


def test_the_import_reader_sees_relative_and_absolute_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from .report import load\nfrom . import grid\nimport triage.experiments as e\n"
                 "def g():\n    from triage.data import x\n")
    assert _imports(f) == {"report", "grid", "experiments", "data"}
