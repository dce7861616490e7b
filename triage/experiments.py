"""``run``: train one network of the grid (a base, a compressed child or the control) into the run store.

Reason to change: how one network is trained from its config (the order of surgery,
initialisation, regime, schedule, stopping and selection). The configs live in
:mod:`triage.config`, the run store in :mod:`triage.store`; their names stay importable from
here.

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

import copy
import hashlib
import json
import time
from pathlib import Path

import torch

from .config import (_FORMAT2_DEFAULTS, CHILD_LR, MODELS, PROFILES, STOPPING, TABLE1, TABLE2,  # noqa: F401
                     ConfigError, HParams, Profile, RunConfig, _base_epochs, hyperparameter_tables,
                     make_config)
from .store import (EXPORTED, METRIC_FIELDS, STORE_FORMAT, RunStore, _check_folder, _git_hash,  # noqa: F401
                    _prepare_folder, _save_npz, _write_metrics, atomic_torch_save, atomic_write_bytes,
                    atomic_write_json, default_results_root, default_runs_root, export_run)
from .data import DATASETS, spec  # noqa: F401  (DATASETS: kept importable here)
from .loaders import get_split_loaders
from .init import INITS, initialise  # noqa: F401
from .models import VGG, vgg16_bn
from .surgery import compress_block, compress_blocks  # noqa: F401  (compress_block: kept importable here)
from .train import (DTYPES, REGIMES, apply_regime, autocast_dtype, channels_last, epochs_to_fraction,  # noqa: F401
                    evaluate, hardware, make_optimizer, make_scheduler, predict, rng_state, seed_everything,
                    set_rng_state, summarise, train_one_epoch)

__all__ = ["HParams", "TABLE1", "TABLE2", "Profile", "PROFILES", "RunConfig", "make_config",
           "ConfigError", "RunStore", "run", "load_model", "build_model", "check_model_data",
           "default_runs_root", "default_results_root", "export_run", "summarise_run",
           "hyperparameter_tables", "seed_settings"]


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
    if cfg.model != "vgg16_bn":
        from .resnet import RESNETS
        return RESNETS[cfg.model](s.num_classes, in_channels=s.in_channels, width=cfg.width)
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
    """Rebuild the trained network stored in a run folder (or in its export, for a base)."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "config.json").read_text())
    cfg = RunConfig(**meta["config"])
    model = build_model(cfg)
    if cfg.block:
        model = compress_blocks(model, cfg.compressed_blocks)
    if not (run_dir / "weights.pt").exists():
        raise ConfigError(f"{run_dir} holds no weights (children's weights are not exported); "
                          "retrain it with `triage run` to analyse it")
    state = torch.load(run_dir / "weights.pt", map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


def _final_lr(run_dir: Path) -> float:
    """The lr a finished run ended with (after its last schedule step)."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    if "final_lr" not in summary:
        raise ConfigError(f"{run_dir} records no final lr (an older run); use child_lr='initial'")
    return float(summary["final_lr"])


def _stn_init(cfg: RunConfig, store: RunStore, parent: VGG, child: VGG, train_loader, amp,
              progress: bool, cache: bool) -> list[float]:
    """STN-initialise ``child`` in place, sharing the result between the FM and TM children.

    The hint training depends on the parent, the block and the STN settings, not on the
    regime that follows, so its result is stored once under the run store
    (``stn-b<block>-<hash>/init.pt``) and reused by the other regime's child.
    """
    blob = json.dumps({"parent": cfg.parent().key(), "block": cfg.block, "stn_epochs": cfg.stn_epochs,
                       "stn_tol": cfg.stn_tol, "batch_size": cfg.batch_size, "precision": cfg.precision,
                       "seed": cfg.seed}, sort_keys=True).encode()
    path = (store.root / cfg.profile / cfg.dataset /
            f"stn-b{cfg.block}-{hashlib.sha256(blob).hexdigest()[:12]}" / "init.pt")
    new_block = child.block(cfg.block)
    if path.exists():
        saved = torch.load(path, map_location=next(child.parameters()).device, weights_only=False)
        new_block.load_state_dict(saved["block"])
        return saved["stn_losses"]
    torch.manual_seed(cfg.seed)
    losses = initialise(child, parent, cfg.block, "stn", train_loader, stn_epochs=cfg.stn_epochs,
                        autocast_dtype=amp, progress=progress, stn_tol=cfg.stn_tol, cache=cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(path, {"block": {k: v.detach().cpu() for k, v in new_block.state_dict().items()},
                             "stn_losses": losses})
    return losses


# A cache of the frozen prefix's outputs larger than this falls back to the uncached pass.
_CACHE_LIMIT_BYTES = 6 * 2**30


def _frozen_features(cfg: RunConfig, model: VGG, train_loader, amp):
    """(batches, forward) for FM training from cached prefix outputs; (loader, None) otherwise.

    Under FM, blocks before the compressed one are frozen with their BNs in eval mode, so
    their output is a fixed function of the image and its flip: computed once
    (:class:`triage.train.CachedFeatures`), and each step starts at the compressed block.
    """
    from .train import CachedFeatures
    if cfg.regime != "frozen" or cfg.block < 2:
        return train_loader, None
    prefix = model.prefix(cfg.block).eval()
    need = CachedFeatures.nbytes_per_image(prefix, train_loader, amp) * train_loader.dataset_size
    if need > _CACHE_LIMIT_BYTES:
        return train_loader, None
    feats = CachedFeatures(prefix, train_loader, amp_dtype=amp)
    return feats, (lambda m, h: m.forward_from(h, cfg.block))


def _plateau_stop(rows: list[dict], lr_now: float, cfg: RunConfig, best_epoch: int) -> bool:
    """The plateau rule: the lr has reached its floor and validation accuracy has not improved.

    Stop once the last ``stop_patience`` epochs all trained at the floor (and the lr is
    still there) and none of them improved the best validation accuracy.
    """
    floor = cfg.min_lr * (1 + 1e-6)
    k = cfg.stop_patience
    at_floor = len(rows) >= k and all(r["lr"] <= floor for r in rows[-k:]) and lr_now <= floor
    return at_floor and len(rows) - best_epoch >= k


def run(cfg: RunConfig, store: RunStore | None = None, *, data_root=None, device="auto",
        progress: bool = True, run_dir: Path | None = None, log=print, cache: bool = True) -> Path:
    """Train one network of the grid (reusing a finished run) and return its folder.

    A child (block >= 1) and the control start from the trained base of the same data
    set, profile and seed, found in the store or its export, else trained first.

    Protocol (format 2, ``val_fraction > 0``): the schedule and the best epoch are chosen
    on the validation split, the reported accuracy is the test accuracy at that epoch,
    and the stored weights are those of that epoch. With ``stopping='plateau'`` training
    stops once the lr has reached ``min_lr`` and validation accuracy has not improved for
    ``stop_patience`` epochs; ``summary.json`` says why it stopped (converged / cap /
    fixed). A finished run is exported to ``store.results`` at once.

    A run interrupted mid-training resumes from its last completed epoch (every RNG state
    is in the checkpoint). ``cache=False`` turns off the FM/STN feature caches (same
    numbers up to rounding, slower; for the equivalence test).
    """
    store = store or RunStore()
    device = resolve_device(device)
    own_dir = run_dir is None
    run_dir = Path(run_dir) if run_dir is not None else store.path(cfg)
    done = _finished_run(cfg, store, run_dir, own_dir, log)
    if done is not None:
        return done

    ckpt_path = run_dir / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=False) if ckpt_path.exists() else None
    amp = autocast_dtype(device, cfg.precision)
    if ckpt is not None and "autocast" in ckpt:
        # "auto" resolves by the machine; a run resumed elsewhere keeps the arithmetic it began with
        by_name = {v: k for k, v in DTYPES.items()}
        if ckpt["autocast"] not in by_name:
            raise ConfigError(f"{ckpt_path} was trained in {ckpt['autocast']!r}, which this triage does not know "
                              f"({', '.join(by_name)}); delete it to train the run from the start")
        amp = by_name[ckpt["autocast"]]
    elif cfg.is_child:
        amp = _seed_autocast(cfg, store, device, amp, log)
    cl = channels_last(amp, ckpt, build_model(cfg), device)
    memory_format = torch.channels_last if cl else torch.contiguous_format
    loaders = get_split_loaders(
        cfg.dataset, root=data_root, batch_size=cfg.batch_size, device=device,
        train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class,
        val_fraction=cfg.val_fraction, seed=cfg.seed, resolution=cfg.resolution, flip=cfg.flip,
        channels_last=cl)
    train_loader, val_loader, test_loader, data_spec = loaders
    # only now that the data loaded: a failed start leaves no half-made folder behind
    _prepare_folder(run_dir, cfg, device)

    seed_everything(cfg.seed)
    parent_dir = (run(cfg.parent(), store, data_root=data_root, device=device, progress=progress, log=log,
                      cache=cache) if cfg.is_child else None)
    model, parent, stn_losses = _start_model(cfg, store, parent_dir, ckpt, train_loader, amp, memory_format,
                                             device, progress, cache)
    check_model_data(model, data_spec)
    model = model.to(device=device, memory_format=memory_format)
    apply_regime(model, cfg.regime, cfg.block)
    lr0 = _final_lr(parent_dir) if cfg.is_child and cfg.child_lr == "continue" else cfg.lr
    opt = make_optimizer(model, lr0, cfg.momentum, cfg.weight_decay)
    sched = make_scheduler(opt, cfg.lr_decay, cfg.patience, cfg.cooldown, cfg.min_lr)
    rows, best, stop_reason, stn_losses = _train_epochs(cfg, model, opt, sched, ckpt, stn_losses, loaders,
                                                        run_dir, device, amp, progress, log, cache)
    summary = _finish_run(cfg, model, parent, rows, best, stop_reason, lr0, opt.param_groups[0]["lr"],
                          stn_losses, loaders, run_dir, device, amp)
    ckpt_path.unlink(missing_ok=True)
    if own_dir and store.export_path(cfg) is not None:
        export_run(run_dir, store.export_path(cfg))
    head = summary["test_acc_at_best_val"] if val_loader is not None else summary["max_test_acc"]
    log(f"{cfg.dataset}/{cfg.name}: test acc {head:.4f} (best epoch {summary['best_epoch']}, "
        f"{stop_reason} after {len(rows)} epoch{'s' * (len(rows) != 1)}) -> {run_dir}")
    return run_dir


def seed_settings(cfg: RunConfig, store: RunStore) -> dict[tuple[str, str | None], int]:
    """How the finished networks that start from ``cfg``'s base trained (``cfg`` left out):
    ``{(device type, arithmetic): count}``, from the run store and its export.

    The arithmetic is the recorded autocast name ("float32", "bfloat16"); None for runs from
    before it was recorded. Empty for a base, which is no one's sibling.

    Example:
        >>> seed_settings(make_config("cifar100", 1, "random", "frozen", "campaign", 2), RunStore())  # doctest: +SKIP
        {('cpu', 'float32'): 9}
    """
    if not cfg.is_child:
        return {}
    parent, found = cfg.parent().key(), {}
    folders = [store.run_path(cfg).parent] + ([store.export_path(cfg).parent] if store.export_path(cfg) else [])
    for folder in folders:
        for d in sorted(folder.iterdir()) if folder.is_dir() else ():
            try:
                if not (d / "summary.json").is_file():   # only finished runs: summary.json is written last
                    continue
                meta = json.loads((d / "config.json").read_text())
                other = RunConfig(**meta["config"])
                if not other.is_child or other.key() in found or other.key() == cfg.key() \
                        or other.parent().key() != parent:
                    continue
                autocast = json.loads((d / "summary.json").read_text()).get("autocast")
                on = torch.device(meta.get("device") or "cpu").type
            except (OSError, ValueError, TypeError, KeyError, RuntimeError, ConfigError):
                continue   # not a run folder of this triage: not a sibling
            found[other.key()] = (on, autocast)
    counts: dict = {}
    for setting in found.values():
        counts[setting] = counts.get(setting, 0) + 1
    return counts


def _seed_autocast(cfg: RunConfig, store: RunStore, device: torch.device, amp, log):
    """The arithmetic a new child or control of a partly trained seed trains in: its siblings'.

    One seed's children and its control are compared with each other (the claims difference them
    within a seed), and the same config trained on another device or arithmetic differs by about
    the claims' 1-point margin (TM children, CPU against GPU: median 1.1 points; the method
    chapter's device repeats). ``precision="auto"`` resolves by the machine, so a seed begun on a
    CPU without native bf16 (fp32) and continued on one with it (bf16) would mix the two. A seed
    therefore keeps the device its finished networks used and, under "auto", their arithmetic: fp32
    anywhere, bf16 only where it is native (emulated bf16 measured ~10x slower than fp32 on an
    AVX2 CPU). An explicit ``precision`` ("fp32", "bf16") is part of the config, so its siblings
    share it already.
    """
    seen = seed_settings(cfg, store)
    if not seen:
        return amp
    where = f"{cfg.dataset} seed {cfg.seed} ({cfg.profile})"
    devices = {d for d, _ in seen}
    ariths = {a for _, a in seen if a is not None}
    n = sum(seen.values())
    if len(devices) > 1 or len(ariths) > 1:
        log(f"{where}: its {n} finished networks already mix settings ({seen}); "
            f"{cfg.name} trains in {DTYPES[amp]} on {device.type}")
        return amp
    (trained_on,) = devices
    if trained_on != device.type:
        raise ConfigError(f"{where}: its other {n} finished networks trained on {trained_on}, {cfg.name} would "
                          f"train on {device.type}; one seed's children and control are compared with each other, "
                          f"so they train on one device: train the rest of this seed with --device {trained_on}, "
                          "or another seed here")
    if not ariths or cfg.precision != "auto":
        return amp      # not recorded (older runs): nothing to keep; explicit: the config's
    (arith,) = ariths
    want = {v: k for k, v in DTYPES.items()}[arith]
    if want == amp:
        return amp
    if want is not None and autocast_dtype(device, "auto") is None:
        raise ConfigError(f"{where}: its other {n} finished networks trained in {arith}, which this {device.type} "
                          f"only emulates (~10x slower than fp32); train the rest of this seed on a machine with "
                          "native bf16 (AVX512-BF16 or AMX, or a GPU), or another seed here")
    log(f"{where}: its other {n} finished networks trained in {arith}, so {cfg.name} does too "
        f"(precision=auto would pick {DTYPES[amp]} here): the seed compares like with like")
    return want


def _finished_run(cfg: RunConfig, store: RunStore, run_dir: Path, own_dir: bool, log) -> Path | None:
    """The folder of the finished run of ``cfg`` (exported now if its export is missing), or None."""
    if run_dir.is_dir():
        _check_folder(run_dir, cfg)
    done = store.find(cfg) if own_dir else (run_dir if (run_dir / "summary.json").exists() else None)
    if done is None:
        return None
    if own_dir and done == run_dir and store.export_path(cfg) is not None \
            and not (store.export_path(cfg) / "summary.json").exists():
        export_run(run_dir, store.export_path(cfg))
    log(f"{cfg.dataset}/{cfg.name}: finished run found in {done}")
    return done


def _start_model(cfg: RunConfig, store: RunStore, parent_dir: Path | None, ckpt, train_loader, amp,
                 memory_format, device, progress: bool, cache: bool):
    """The network before its first epoch: (model, parent or None, STN hint losses).

    The base is built fresh; a child is its trained parent with the compressed blocks replaced
    and initialised (skipped when resuming: the checkpoint holds its weights); the control is
    a copy of the parent.
    """
    if not cfg.is_child:
        return build_model(cfg), None, []
    parent = load_model(parent_dir, device).to(memory_format=memory_format)
    if cfg.control:
        return copy.deepcopy(parent), parent, []
    model, stn_losses = compress_blocks(parent, cfg.compressed_blocks), []
    if ckpt is None and cfg.init == "stn":
        stn_losses = _stn_init(cfg, store, parent, model, train_loader, amp, progress, cache)
    elif ckpt is None:
        torch.manual_seed(cfg.seed)
        for block in cfg.compressed_blocks:   # in increasing order (RW draws from one stream)
            initialise(model, parent, block, cfg.init)
    return model, parent, stn_losses


def _train_epochs(cfg: RunConfig, model: VGG, opt, sched, ckpt, stn_losses: list[float], loaders, run_dir: Path,
                  device, amp, progress: bool, log, cache: bool):
    """The epoch loop (resumed from ``ckpt`` when given), checkpointing after every epoch.

    Returns:
        (rows, best, stop_reason, stn_losses): one metrics row per epoch; the best epoch by
        validation accuracy (test accuracy without a validation split) with its weights on the
        CPU; converged / cap / fixed.
    """
    train_loader, val_loader, test_loader, _ = loaders
    rows: list[dict] = []
    best = {"epoch": 0, "acc": -1.0, "state": None}
    start = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        rows, start, stn_losses = ckpt["rows"], ckpt["epoch"], ckpt.get("stn_losses", [])
        best = ckpt.get("best", best)
        log(f"{cfg.dataset}/{cfg.name}: resuming after epoch {start}")

    batches, forward = _frozen_features(cfg, model, train_loader, amp) if cache else (train_loader, None)
    stop_reason = "fixed" if cfg.stopping == "fixed" else "cap"
    bar = _tqdm(range(start, cfg.epochs), desc=f"{cfg.dataset}/{cfg.name}", disable=not progress,
                total=cfg.epochs, initial=start)
    for epoch in bar:
        t0, c0 = time.perf_counter(), time.process_time()
        batches.set_epoch(epoch)
        tr = train_one_epoch(model, opt, batches, device=device, amp_dtype=amp, regime=cfg.regime,
                             block=cfg.block, progress=progress, desc=f"epoch {epoch + 1}", forward=forward)
        va = evaluate(model, val_loader, device=device, amp_dtype=amp) if val_loader is not None else None
        te = evaluate(model, test_loader, device=device, amp_dtype=amp)
        lr = opt.param_groups[0]["lr"]
        select = va["acc"] if va is not None else te["acc"]
        sched.step(select)
        row = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"],
               "test_loss": te["loss"], "test_acc": te["acc"], "lr": lr,
               "seconds": round(time.perf_counter() - t0, 3),
               # this process's CPU time: unlike the wall time, not inflated by a pause (SIGSTOP)
               # or by other processes sharing the cores; on a GPU it is the host's share only
               "cpu_seconds": round(time.process_time() - c0, 3)}
        if va is not None:
            row.update(val_loss=va["loss"], val_acc=va["acc"])
        rows.append(row)
        if select > best["acc"]:
            best = {"epoch": epoch + 1, "acc": select,
                    "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
        bar.set_postfix(train_acc=f"{tr['acc']:.3f}", test_acc=f"{te['acc']:.3f}",
                        **({"val_acc": f"{va['acc']:.3f}"} if va is not None else {}))
        _write_metrics(run_dir, rows)
        atomic_torch_save(run_dir / "checkpoint.pt", {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": rng_state(), "epoch": epoch + 1,
            "rows": rows, "stn_losses": stn_losses, "best": best, "autocast": DTYPES[amp],
            "channels_last": train_loader.channels_last})
        if cfg.stopping == "plateau" and _plateau_stop(rows, opt.param_groups[0]["lr"], cfg, best["epoch"]):
            stop_reason = "converged"
            break
    bar.close()
    return rows, best, stop_reason, stn_losses


def _finish_run(cfg: RunConfig, model: VGG, parent: VGG | None, rows: list[dict], best: dict, stop_reason: str,
                lr0: float, final_lr: float, stn_losses: list[float], loaders, run_dir: Path, device, amp) -> dict:
    """Select the reported network, measure it and write its files; ``summary.json`` last."""
    train_loader, val_loader, test_loader, data_spec = loaders
    if val_loader is not None and best["state"] is not None:
        # the network the protocol selects: the weights of the best validation epoch
        model.load_state_dict(best["state"])
    summary = summarise_run(rows, has_val=val_loader is not None)
    preds = predict(model, test_loader, device=device, amp_dtype=amp)
    counts = torch.bincount(preds, minlength=data_spec.num_classes)
    summary.update({
        "dataset": cfg.dataset, "block": cfg.block, "init": cfg.init, "regime": cfg.regime,
        "control": cfg.control, "scheme": cfg.scheme, "name": cfg.name, "profile": cfg.profile,
        "seed": cfg.seed, "key": cfg.key(), "stop_reason": stop_reason,
        "final_lr": final_lr, "start_lr": lr0,
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(sum(r["seconds"] for r in rows), 2),
        # None when some epochs ran before the CPU time was recorded (a resumed older run)
        "train_cpu_seconds": (round(sum(r["cpu_seconds"] for r in rows), 2)
                              if all("cpu_seconds" in r for r in rows) else None),
        "stn_losses": stn_losses, "stn_epochs_trained": len(stn_losses),
        "train_images": train_loader.dataset_size, "test_images": test_loader.dataset_size,
        "val_images": val_loader.dataset_size if val_loader is not None else 0,
        # a network that answers (almost) the same class for every input is a failure, not a result
        "majority_frac": float(counts.max()) / max(len(preds), 1),
        # what precision="auto" became here (bf16 needs native support on a CPU), and on what:
        # one seed's networks trained in different arithmetic differ as if on another device
        "autocast": DTYPES[amp], "hardware": hardware(device),
        # the layout too: fp32 in NCHW and in channels_last differ in rounding (summation order)
        "channels_last": train_loader.channels_last,
    })
    from .similarity import block1_record, dead_compressed
    base_model = parent if parent is not None else model
    maps, cka, dead = block1_record(model, base_model, test_loader, device=device, amp_dtype=amp)
    summary["cka_block1"] = cka
    summary["dead_block1"] = dead   # block-1 channels zero on all the CKA probe images
    if cfg.block > 0:   # the same count at the compressed block's output, the layer FM trains alone
        summary["dead_compressed"], summary["compressed_channels"] = dead_compressed(
            model, cfg.block, test_loader, amp_dtype=amp)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save(run_dir / "weights.pt", state)
    _save_npz(run_dir / "block1.npz", maps=maps)
    atomic_write_json(run_dir / "summary.json", summary)  # written last: marks the run finished
    return summary


def summarise_run(rows: list[dict], has_val: bool) -> dict:
    """The per-run numbers of results format 2 from the metrics rows.

    ``best_epoch`` is the epoch of best validation accuracy (of best test accuracy without a
    validation split); ``test_acc_at_best_val`` is the headline; ``max_test_acc``,
    ``epoch_of_max`` and ``epochs_to_99pct`` are the paper's measures on test accuracy;
    ``epochs_to_99pct_val`` is Fig. 4's measure on validation accuracy.
    """
    test = [r["test_acc"] for r in rows]
    out = summarise(test)
    sel = [r["val_acc"] for r in rows] if has_val else test
    best = max(range(len(sel)), key=lambda i: (sel[i], -i))
    out.update(best_epoch=best + 1, best_val_acc=sel[best] if has_val else None,
               test_acc_at_best_val=test[best] if has_val else None,
               epochs_to_99pct_val=epochs_to_fraction(sel, 0.99) if has_val else None,
               epochs_trained=len(rows))
    return out


def _tqdm(*args, **kwargs):
    from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)
