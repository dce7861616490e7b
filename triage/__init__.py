"""triage: find out which parts of a trained CNN matter.

Reproduces Nowak & Corso, *Deep Net Triage* (structural compression of VGG16-BN
blocks, RW/MW/STN initialisers, frozen/thawed training).

Example:
    >>> import triage
    >>> cfg = triage.make_config("mnist", block=3, init="mean", regime="thawed", profile="smoke")
    >>> run_dir = triage.run(cfg)            # doctest: +SKIP
"""
__version__ = "0.1.0"

from .models import VGG, VGG16_CFG, vgg16_bn, block_names, block_convs, conv_layers  # noqa: E402
from .surgery import compress_block, compressed_layer_names  # noqa: E402
from .init import INITS, glorot_, parent_mean_, student_teacher_, hint_loss, initialise  # noqa: E402
from .train import (REGIMES, apply_regime, set_train_mode, train_one_epoch, evaluate,  # noqa: E402
                    seed_everything, summarise, epochs_to_fraction, autocast_dtype)
from .data import (DATASETS, DataError, DatasetSpec, spec, load_split, get_loaders,  # noqa: E402
                   DeviceLoader, stratified_subset, resolve_root, download, channel_stats)
from .experiments import (PROFILES, TABLE1, TABLE2, Profile, HParams, RunConfig,  # noqa: E402
                          ConfigError, RunStore, make_config, run, load_model, build_model)
from .grid import expand_grid, run_grid, results_table, grid_status, status_counts  # noqa: E402
from .claims import (CLAIMS, VERDICTS, ClaimsReport, check_claims, collapsed_networks,  # noqa: E402
                     cka_bases, fig3_cka, plot_claim)
from . import autopsy, critical, grid, plots, report  # noqa: E402  (analyses of the other two papers; the grid)
