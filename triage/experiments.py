"""Experiment configs, profiles, the run store and ``run`` (one network of the grid).

A run is described by one frozen :class:`RunConfig`; its folder is addressed by
a hash of that config, so rerunning finds and reuses finished work. A child
(block 1..5) always starts from the *trained* base of the same data set,
profile and seed, which is trained once and stored.

Run folder (``<runs>/<profile>/<dataset>/<name>-<hash>/``)::

    config.json    full config + seed, triage version, git hash, torch, device
    metrics.csv    one row per epoch: train loss/acc, test loss/acc, lr, seconds
    summary.json   max test accuracy, epoch of max, epochs to 99% of max, ...
    weights.pt     final state dict
    checkpoint.pt  (while training) last completed epoch, written atomically
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .data import DATASETS, get_loaders, spec
from .init import INITS, initialise
from .models import VGG, vgg16_bn
from .surgery import compress_block
from .train import (REGIMES, apply_regime, autocast_dtype, evaluate, make_optimizer,
                    make_scheduler, seed_everything, summarise, train_one_epoch)

__all__ = ["HParams", "TABLE1", "TABLE2", "Profile", "PROFILES", "RunConfig", "make_config",
           "ConfigError", "RunStore", "run", "load_model", "build_model", "check_model_data",
           "default_runs_root", "hyperparameter_tables"]


class ConfigError(ValueError):
    """A config or command line that cannot be run; the message is one line for the user."""


@dataclass(frozen=True)
class HParams:
    """Per-data-set hyperparameters, the paper's Table 1."""
    lr: float            # initial learning rate
    min_lr: float        # ReduceLROnPlateau floor
    lr_decay: float      # factor applied on each plateau
    weight_decay: float  # L2 weight decay (SGD's weight_decay)
    base_epochs: int     # epochs the uncompressed base model is trained


TABLE1 = {
    "mnist": HParams(lr=1e-3, min_lr=1e-5, lr_decay=0.5, weight_decay=1e-3, base_epochs=100),
    "cifar10": HParams(lr=1e-3, min_lr=1e-5, lr_decay=0.7, weight_decay=5e-4, base_epochs=100),
    "cifar100": HParams(lr=1e-2, min_lr=1e-5, lr_decay=0.7, weight_decay=5e-4, base_epochs=125),
    # Table 1 leaves Stanford Dogs' weight decay blank; we use CIFAR's 5e-4.
    "stanford_dogs": HParams(lr=1e-3, min_lr=1e-7, lr_decay=0.7, weight_decay=5e-4, base_epochs=125),
}

# The paper's Table 2, constant across data sets.
TABLE2 = {"momentum": 0.9, "patience": 1, "cooldown": 3, "comp_epochs": 25, "stn_epochs": 12}


@dataclass(frozen=True)
class Profile:
    """A named scale of the experiment (the paper's is ``paper``)."""
    name: str
    width: float                 # channel multiplier of VGG16-BN (paper: 1)
    train_images: int | None     # stratified training subset size (None: the full split)
    test_images: int | None      # stratified test subset size (None: the full split)
    base_epochs: int | None      # None: Table 1's per-data-set value
    comp_epochs: int             # epochs after compression (paper: 25)
    stn_epochs: int              # STN hint epochs (paper: 12)
    batch_size: int              # the paper does not give one
    lr: float | None = None      # None: Table 1's per-data-set lr; short schedules need a larger one
    description: str = ""


PROFILES = {
    "smoke": Profile("smoke", width=1 / 8, train_images=2000, test_images=500, base_epochs=6,
                     comp_epochs=1, stn_epochs=1, batch_size=32, lr=0.02,
                     description="seconds on 2 CPU cores; for tests and CI"),
    "cpu": Profile("cpu", width=1 / 4, train_images=5000, test_images=2000, base_epochs=20,
                   comp_epochs=6, stn_epochs=2, batch_size=64, lr=0.02,
                   description=("a 31-network grid of one 32-px data set in ~12 min on 2 CPU cores "
                                "(Stanford Dogs, 64 px: ~30 min)")),
    "paper": Profile("paper", width=1.0, train_images=None, test_images=None, base_epochs=None,
                     comp_epochs=TABLE2["comp_epochs"], stn_epochs=TABLE2["stn_epochs"],
                     batch_size=128, description="the paper's Tables 1-2, full data, width 1"),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one network's result. Saved as config.json."""
    dataset: str
    block: int = 0                 # 0: the uncompressed base; 1..5: the compressed block
    init: str | None = None        # random (RW) | mean (MW) | stn (STN); None for the base
    regime: str | None = None      # frozen (FM) | thawed (TM); None for the base
    profile: str = "smoke"
    seed: int = 0
    width: float = 1.0
    resolution: int = 32           # input side in px (paper: 224 by upsampling)
    train_per_class: int | None = None
    test_per_class: int | None = None
    batch_size: int = 128
    epochs: int = 25               # base: Table 1; child: Table 2's 25
    stn_epochs: int = 12
    lr: float = 1e-3
    min_lr: float = 1e-5
    lr_decay: float = 0.7
    weight_decay: float = 5e-4
    momentum: float = 0.9
    patience: int = 1
    cooldown: int = 3
    precision: str = "auto"        # auto | bf16 | fp32 (autocast dtype)
    flip: bool = True              # random horizontal flips (paper Sec. 3.4)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if not 0 <= self.block <= 5:
            raise ConfigError(f"block must be 0 (the base) or 1..5, got {self.block}")
        if self.block == 0:
            if self.init is not None or self.regime is not None:
                raise ConfigError("block 0 is the uncompressed base: it takes no --init or --regime")
        else:
            if self.init not in INITS:
                raise ConfigError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
            if self.regime not in REGIMES:
                raise ConfigError(f"unknown regime {self.regime!r}; choose one of {', '.join(REGIMES)}")
        for name in ("epochs", "stn_epochs", "batch_size", "resolution"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("width", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.resolution < 32:
            raise ConfigError(f"resolution must be >= 32 px (VGG16 pools five times), got {self.resolution}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"unknown precision {self.precision!r}; choose auto, bf16 or fp32")

    @property
    def name(self) -> str:
        """Short readable name: ``base`` or e.g. ``b3-mean-thawed``."""
        return "base" if self.block == 0 else f"b{self.block}-{self.init}-{self.regime}"

    @property
    def scheme(self) -> str:
        """The paper's label: Base, or e.g. TM-STN."""
        if self.block == 0:
            return "Base"
        short = {"random": "RW", "mean": "MW", "stn": "STN"}[self.init]
        return f"{'FM' if self.regime == 'frozen' else 'TM'}-{short}"

    def key(self) -> str:
        """Hash of the full config: the run's address in the store."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def parent(self, base_epochs: int | None = None) -> "RunConfig":
        """The base run this child starts from (same data, profile, seed, width, ...)."""
        if self.block == 0:
            return self
        epochs = base_epochs if base_epochs is not None else _base_epochs(self.profile, self.dataset)
        # stn_epochs does not act on the base: keep the profile's, so that changing it for the
        # children does not change the base's hash (and retrain it)
        return dataclasses.replace(self, block=0, init=None, regime=None, epochs=epochs,
                                   stn_epochs=PROFILES[self.profile].stn_epochs)


def _base_epochs(profile: str, dataset: str) -> int:
    p = PROFILES[profile]
    return p.base_epochs if p.base_epochs is not None else TABLE1[dataset].base_epochs


def make_config(dataset: str, block: int = 0, init: str | None = None, regime: str | None = None,
                profile: str = "smoke", seed: int = 0, **overrides) -> RunConfig:
    """Build the config of one network from a profile, Tables 1-2 and overrides.

    Example:
        >>> cfg = make_config("mnist", block=3, init="mean", regime="thawed", profile="smoke")
        >>> cfg.name, cfg.width
        ('b3-mean-thawed', 0.0625)
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    p, h, s = PROFILES[profile], TABLE1[dataset], spec(dataset)
    for name, value in (("block", block), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if block == 0 and (init is not None or regime is not None):
        raise ConfigError("block 0 is the uncompressed base: it takes no --init or --regime")
    if block != 0:
        init = init or "random"
        regime = regime or "thawed"

    def per_class(n):
        return None if n is None else max(1, n // s.num_classes)

    base = dict(
        dataset=dataset, block=block, init=init, regime=regime, profile=profile, seed=seed,
        width=p.width, resolution=s.image_size,
        train_per_class=per_class(p.train_images), test_per_class=per_class(p.test_images),
        batch_size=p.batch_size,
        epochs=_base_epochs(profile, dataset) if block == 0 else p.comp_epochs,
        stn_epochs=p.stn_epochs, lr=h.lr if p.lr is None else p.lr, min_lr=h.min_lr, lr_decay=h.lr_decay,
        weight_decay=h.weight_decay, momentum=TABLE2["momentum"], patience=TABLE2["patience"],
        cooldown=TABLE2["cooldown"],
    )
    unknown = set(overrides) - {f.name for f in dataclasses.fields(RunConfig)}
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    if block == 0:
        base["stn_epochs"] = p.stn_epochs  # no effect on the base; see RunConfig.parent
    return RunConfig(**base)


# ----------------------------------------------------------------------------- store

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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 files; give run files the usual umask-based mode so a
        # store shared on a cluster file system stays readable by colleagues
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_torch_save(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
STORE_FORMAT = 1  # bump when the layout of a run folder changes incompatibly


@dataclass
class RunStore:
    """Run folders under ``root``, addressed by config hash."""
    root: Path = field(default_factory=default_runs_root)

    def __post_init__(self):
        self.root = Path(self.root)

    def path(self, cfg: RunConfig) -> Path:
        return self.root / cfg.profile / cfg.dataset / f"{cfg.name}-{cfg.key()}"

    def is_done(self, cfg: RunConfig) -> bool:
        d = self.path(cfg)
        return (d / "summary.json").exists() and (d / "weights.pt").exists()


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
        if other != dataclasses.asdict(cfg):
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
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(run_dir / "metrics.csv", buf.getvalue().encode())


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}") from e
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available")
    return d


def build_model(cfg: RunConfig) -> VGG:
    """The (uncompressed) architecture of ``cfg`` with fresh weights."""
    s = spec(cfg.dataset)
    return vgg16_bn(s.num_classes, in_channels=s.in_channels, width=cfg.width,
                    resolution=cfg.resolution)


def check_model_data(model: VGG, data_spec) -> None:
    """Refuse a model whose input channels or classes do not match a data set."""
    if model.in_channels != data_spec.in_channels:
        raise ConfigError(f"{data_spec.name} has {data_spec.in_channels} input channel(s) but the model "
                          f"takes {model.in_channels}")
    if model.num_classes != data_spec.num_classes:
        raise ConfigError(f"{data_spec.name} has {data_spec.num_classes} classes but the model "
                          f"predicts {model.num_classes}")


def load_model(run_dir: Path | str, device="cpu") -> VGG:
    """Rebuild the trained network stored in a run folder."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "config.json").read_text())
    cfg = RunConfig(**meta["config"])
    model = build_model(cfg)
    if cfg.block:
        model = compress_block(model, cfg.block)
    state = torch.load(run_dir / "weights.pt", map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


def run(cfg: RunConfig, store: RunStore | None = None, *, data_root=None, device="auto",
        progress: bool = True, run_dir: Path | None = None, log=print) -> Path:
    """Train one network of the grid (reusing a finished run) and return its folder.

    For a child (block >= 1) the trained base of the same data set, profile and
    seed is loaded from the store, trained first if it is not there.

    A run interrupted mid-training resumes from its last completed epoch.
    """
    store = store or RunStore()
    device = resolve_device(device)
    run_dir = Path(run_dir) if run_dir is not None else store.path(cfg)
    if run_dir.is_dir():
        _check_folder(run_dir, cfg)
    if (run_dir / "summary.json").exists() and (run_dir / "weights.pt").exists():
        log(f"{cfg.dataset}/{cfg.name}: finished run found in {run_dir}")
        return run_dir

    amp = autocast_dtype(device, cfg.precision)
    # channels_last is what makes bf16 convs fast on CPU (oneDNN) and on tensor cores.
    channels_last = amp is not None
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    train_loader, test_loader, data_spec = get_loaders(
        cfg.dataset, root=data_root, batch_size=cfg.batch_size, device=device,
        train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class, seed=cfg.seed,
        resolution=cfg.resolution, flip=cfg.flip, channels_last=channels_last)
    # only now that the data loaded: a failed start leaves no half-made folder behind
    _prepare_folder(run_dir, cfg, device)

    seed_everything(cfg.seed)
    ckpt_path = run_dir / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=False) if ckpt_path.exists() else None
    stn_losses: list[float] = []
    if cfg.block == 0:
        model = build_model(cfg)
    else:
        parent_dir = run(cfg.parent(), store, data_root=data_root, device=device, progress=progress,
                         log=log)
        parent = load_model(parent_dir, device).to(memory_format=memory_format)
        model = compress_block(parent, cfg.block)
        if ckpt is None:
            torch.manual_seed(cfg.seed)
            stn_losses = initialise(model, parent, cfg.block, cfg.init, train_loader,
                                    stn_epochs=cfg.stn_epochs, autocast_dtype=amp, progress=progress)
        del parent
    check_model_data(model, data_spec)
    model = model.to(device=device, memory_format=memory_format)
    apply_regime(model, cfg.regime, cfg.block)
    opt = make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    sched = make_scheduler(opt, cfg.lr_decay, cfg.patience, cfg.cooldown, cfg.min_lr)
    rows: list[dict] = []
    start = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"])
        rows, start, stn_losses = ckpt["rows"], ckpt["epoch"], ckpt.get("stn_losses", [])
        log(f"{cfg.dataset}/{cfg.name}: resuming after epoch {start}")

    epochs = range(start, cfg.epochs)
    bar = _tqdm(epochs, desc=f"{cfg.dataset}/{cfg.name}", disable=not progress,
                total=cfg.epochs, initial=start)
    for epoch in bar:
        t0 = time.perf_counter()
        train_loader.set_epoch(epoch)
        tr = train_one_epoch(model, opt, train_loader, device=device, amp_dtype=amp,
                             regime=cfg.regime, block=cfg.block, progress=progress,
                             desc=f"epoch {epoch + 1}")
        te = evaluate(model, test_loader, device=device, amp_dtype=amp)
        lr = opt.param_groups[0]["lr"]
        sched.step(te["acc"])
        rows.append({"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"],
                     "test_loss": te["loss"], "test_acc": te["acc"], "lr": lr,
                     "seconds": round(time.perf_counter() - t0, 3)})
        bar.set_postfix(train_acc=f"{tr['acc']:.3f}", test_acc=f"{te['acc']:.3f}")
        _write_metrics(run_dir, rows)
        atomic_torch_save(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": torch.get_rng_state(), "epoch": epoch + 1,
            "rows": rows, "stn_losses": stn_losses})

    summary = summarise([r["test_acc"] for r in rows])
    summary.update({
        "dataset": cfg.dataset, "block": cfg.block, "init": cfg.init, "regime": cfg.regime,
        "scheme": cfg.scheme, "profile": cfg.profile, "seed": cfg.seed, "key": cfg.key(),
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(sum(r["seconds"] for r in rows), 2),
        "stn_losses": stn_losses,
        "train_images": train_loader.dataset_size, "test_images": test_loader.dataset_size,
    })
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save(run_dir / "weights.pt", state)
    atomic_write_json(run_dir / "summary.json", summary)  # written last: marks the run finished
    ckpt_path.unlink(missing_ok=True)
    log(f"{cfg.dataset}/{cfg.name}: max test acc {summary['max_test_acc']:.4f} "
        f"(epoch {summary['epoch_of_max']}), 99% of max at epoch {summary['epochs_to_99pct']} -> {run_dir}")
    return run_dir


def _tqdm(*args, **kwargs):
    from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)


def hyperparameter_tables():
    """The paper's Tables 1-2 and our profiles, as pandas DataFrames (rendered from the configs).

    Returns:
        (table1, table2, profiles): Table 1 per data set, Table 2 (constants), and one row per profile.
    """
    import pandas as pd

    t1 = pd.DataFrame([dataclasses.asdict(h) for h in TABLE1.values()], index=list(TABLE1))
    t1.index.name = "dataset"
    t2 = pd.DataFrame([TABLE2], index=["all"])
    prof = pd.DataFrame([dataclasses.asdict(p) for p in PROFILES.values()]).set_index("name")
    return t1, t2, prof
