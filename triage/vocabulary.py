"""The paper's names for what triage calls by its own: defined once, used by every table,
plot, widget and claim.

Reason to change: a label of the paper (Nowak & Corso, Sec. 3: RW / MW / STN initialisers,
FM / TM regimes, schemes such as TM-STN, the grid's 31 networks) or the order the figures
show them in.
"""
from __future__ import annotations

from .init import INITS
from .train import REGIMES

__all__ = ["INIT_LABELS", "REGIME_LABELS", "LABELS", "SCHEMES", "GRID_SIZE", "scheme_label", "is_base"]

INIT_LABELS = {"random": "RW", "mean": "MW", "stn": "STN"}      # triage.init's names -> the paper's
REGIME_LABELS = {"frozen": "FM", "thawed": "TM"}                 # triage.train's names -> the paper's
LABELS = {**INIT_LABELS, **REGIME_LABELS}
# Fig. 2's order: FM before TM, RW / MW / STN within each.
SCHEMES = tuple(f"{REGIME_LABELS[r]}-{INIT_LABELS[i]}" for r in REGIMES for i in INITS)
# Networks per data set and seed (Sec. 3): 1 base + 5 blocks of VGG16-BN x 3 inits x 2 regimes.
GRID_SIZE = 1 + 5 * len(INITS) * len(REGIMES)


def scheme_label(init: str, regime: str) -> str:
    """The paper's scheme label of a child, e.g. ``scheme_label("stn", "thawed") == "TM-STN"``."""
    return f"{REGIME_LABELS[regime]}-{INIT_LABELS[init]}"


def is_base(runs):
    """Which rows of a runs table are uncompressed bases: block 0 and not the control.

    The control (the base trained again with the children's schedule) is a block-0 row too;
    a lookup by block alone finds whichever of the two comes first in the table.
    """
    control = runs["control"].fillna(False).astype(bool) if "control" in runs.columns else False
    if "name" in runs.columns:
        control = control | (runs["name"] == "control")
    return (runs["block"] == 0) & ~control
