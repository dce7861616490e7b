"""triage: find out which parts of a trained CNN matter.

Reproduces Nowak & Corso, *Deep Net Triage* (structural compression of VGG16-BN
blocks, RW/MW/STN initialisers, frozen/thawed training).

Example:
    >>> import triage
    >>> cfg = triage.make_config("mnist", block=3, init="mean", regime="thawed", profile="smoke")
    >>> run_dir = triage.run(cfg)            # doctest: +SKIP
"""
from ._version import __version__  # noqa: F401

from .models import VGG, VGG16_CFG, vgg16_bn, block_names, block_convs, conv_layers, count_flops  # noqa: E402
from .surgery import compress_block, compress_blocks, compressed_layer_names, distill, mask_filters  # noqa: E402
from .init import INITS, glorot_, parent_mean_, student_teacher_, hint_loss, initialise  # noqa: E402
from .train import (REGIMES, apply_regime, set_train_mode, train_one_epoch, evaluate,  # noqa: E402
                    seed_everything, summarise, epochs_to_fraction, autocast_dtype)
from .data import (DATASETS, DataError, DatasetSpec, spec, load_split,  # noqa: E402
                   stratified_subset, resolve_root, download, channel_stats)
from .loaders import get_loaders, DeviceLoader  # noqa: E402
from .experiments import (PROFILES, TABLE1, TABLE2, Profile, HParams, RunConfig,  # noqa: E402
                          ConfigError, RunStore, make_config, run, load_model, build_model)
from .grid import expand_grid, results_table, grid_status, status_counts  # noqa: E402
from .executors import run_grid  # noqa: E402
from .claims import CLAIMS, VERDICTS, ClaimsReport, check_claims, collapsed_networks  # noqa: E402
from .claims_tables import cka_bases, fig3_cka  # noqa: E402
from .claims_chapter import plot_claim  # noqa: E402
from .store import ResultStore, Store  # noqa: E402
from . import autopsy, findings, kmeans, robustness  # noqa: E402  (the autopsy paper)
from . import (critical, critical_am, critical_distill, critical_eval,  # noqa: E402  (the critical-paths paper)
               critical_exclusive, critical_chapter)
from . import studies  # noqa: E402  (both, on stored runs)
from . import grid, plots, plots_autopsy, plots_critical, report  # noqa: E402
from . import convergence, executors, results_chapter, tables, template  # noqa: E402  (how the grid runs; tables of stored runs)
from . import failure, failure_report  # noqa: E402  (compress to failure: beyond the paper, issue 17)
