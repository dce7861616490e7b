"""The paper's names for what triage calls by its own: defined once, used by every table,
plot, widget and claim.

Reason to change: a label of the paper (Nowak & Corso, Sec. 3: RW / MW / STN initialisers,
FM / TM regimes, schemes such as TM-STN) or the order the figures show them in.
"""
from __future__ import annotations

from .init import INITS
from .train import REGIMES

__all__ = ["INIT_LABELS", "REGIME_LABELS", "LABELS", "SCHEMES", "scheme_label"]

INIT_LABELS = {"random": "RW", "mean": "MW", "stn": "STN"}      # triage.init's names -> the paper's
REGIME_LABELS = {"frozen": "FM", "thawed": "TM"}                 # triage.train's names -> the paper's
LABELS = {**INIT_LABELS, **REGIME_LABELS}
# Fig. 2's order: FM before TM, RW / MW / STN within each.
SCHEMES = tuple(f"{REGIME_LABELS[r]}-{INIT_LABELS[i]}" for r in REGIMES for i in INITS)


def scheme_label(init: str, regime: str) -> str:
    """The paper's scheme label of a child, e.g. ``scheme_label("stn", "thawed") == "TM-STN"``."""
    return f"{REGIME_LABELS[regime]}-{INIT_LABELS[init]}"
