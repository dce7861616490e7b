"""Optional dependencies, imported lazily.

torchvision is used only where it adds value (downloading the public data sets,
reading its VGG16-BN weights). The core runs on plain torch.

Reason to change: an optional dependency's import or a torchvision build's missing ops.
"""
from __future__ import annotations

import importlib
import re
import sys

# Schemas of the compiled torchvision ops whose *meta* registrations run at import
# time. A CUDA torchvision wheel next to a CPU torch lacks its compiled library, and
# `import torchvision` then fails with "operator torchvision::nms does not exist".
# Defining the schemas (no kernels) lets the pure-Python parts (datasets, models)
# import; calling nms itself would still fail, and triage never does.
_TV_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_tv_lib = None


def import_torchvision():
    """Import torchvision, working around a build whose compiled ops are absent.

    Raises:
        ImportError: torchvision is not installed (with the install hint).
    """
    global _tv_lib
    try:
        return importlib.import_module("torchvision")
    except ModuleNotFoundError as e:
        raise ImportError(
            "this feature needs torchvision: pip install torchvision --no-deps "
            "(pick the release that matches your torch)") from e
    except RuntimeError as e:
        missing = re.search(r"operator torchvision::(\w+) does not exist", str(e))
        if not missing:
            raise
    import torch

    for _ in range(len(_TV_OP_SCHEMAS) + 1):
        for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[name]
        try:
            return importlib.import_module("torchvision")
        except RuntimeError as e:
            missing = re.search(r"operator torchvision::(\w+) does not exist", str(e))
            if not missing or missing.group(1) not in _TV_OP_SCHEMAS:
                raise
            if _tv_lib is None:
                _tv_lib = torch.library.Library("torchvision", "DEF")
            _tv_lib.define(_TV_OP_SCHEMAS[missing.group(1)])
    raise RuntimeError("could not import torchvision")
