"""Compress to failure (beyond the paper, issue 17): VGG16-BN with more and more blocks compressed.

Reason to change: how a failure path is chosen and trained (candidates, score, configs,
resume) and its ``triage failure`` command. Reading the stored paths back, the failure
verdict, its figure and the budget are :mod:`triage.failure_report`.

The paper ends: "we'd like to compress models structurally to the point at which they
fail". We compress several blocks at once along a greedy path and train every network of
the path like a TM child of the campaign protocol.

**The path.** S_0 is empty (the trained base). At step k every block b not in S_{k-1} is a
candidate; candidate b is the *trained base* with the blocks S_{k-1} + {b} compressed
(:func:`triage.surgery.compress_blocks`), each compressed block MW-initialised from the
base's own block (:func:`triage.init.parent_mean_`). Its score is its validation accuracy
after ``score_epochs`` (default 1) epoch of TM training on the training split (a fresh SGD
at the child's initial lr: the first epoch the child itself would train). The block with the
best score joins the set (:func:`choose_block`; ties go to the smaller block), and the step
network S_k is trained by :func:`triage.run` as a TM-MW child (``RunConfig.extra_blocks``):
validation split, plateau schedule, early stopping, the children's caps, the profile's
child lr; its number is the full test set's accuracy at its best validation epoch. Every
step starts from the base, not from the step before, so each is a child of the same base,
comparable with the continued-base control; step 1 *is* the grid's TM-MW child of its
block (same config, same address: reused; profiles without a validation split, e.g. smoke,
get one of ``VAL_FRACTION`` for the path, hence their own base and control). A path has at most 5 steps (step 5 compresses
all five blocks; its one candidate is not scored), so <= 15 trained networks over 3 seeds.

**Why this score.** Candidates must be cheap: a full path scores 5 + 4 + 3 + 2 = 14
candidates per seed. MW resets the new BNs' statistics, so an MW network without any
training answers nonsense in eval mode; re-estimating every BN's statistics on the
training split (``score_epochs=0``, no gradient step) is the cheapest score, one TM epoch
(``score_epochs=1``) the next. Measured on the CIFAR-10 campaign base of seed 0 (width 1/8,
the five step-1 candidates, one CPU thread beside two trainings): BN statistics only give
9.4-19.5% validation accuracy (chance: 10%) in 6-12 s a candidate; one TM epoch gives
46.4-66.9% in 24-47 s. The single-block TM-MW children trained to convergence by then rank
block 2 (80.2% best validation accuracy) > block 3 (79.9%) > block 1 (78.4%); the 1-epoch
score ranks them alike (63.4 > 62.6 > 46.4%), the BN-only score does not (19.5 > 15.7 for
block 1 > 12.2 for block 3). So one epoch (``SCORE_EPOCHS``): 14 epochs per seed, about half
of one TM network (<= 30 epochs). Because it is exactly the child's first epoch (same seed,
data order, lr), the chosen candidate's score equals its step network's epoch-1 validation
accuracy (tests/test_failure.py checks it).

**Cost.** Parameters, and FLOPs per image of the convolutions and linear layers (2 x their
multiply-accumulates, :func:`triage.models.count_flops`; BN, ReLU, pooling and biases
are left out).

Where it is stored: the step networks are ordinary runs of the run store
(``runs/<profile>/<dataset>/b1+3-mean-thawed-<hash>/``, exported at once like every run);
the path itself (candidates' scores, choices) is ``failure-s<seed>-<hash>/path.json`` beside
them, exported to ``results/triage/<profile>/failure/<dataset>/``, addressed by the base,
the child's config and the score, and written after every candidate, so an interrupted path
resumes where it stopped.

Example:
    >>> from triage import failure, failure_report
    >>> paths = failure.run_failure("cifar10", "smoke", seeds=[0, 1], steps=2)   # doctest: +SKIP
    >>> res = failure_report.load("smoke", "cifar10")                            # doctest: +SKIP
    >>> failure_report.verdict(res)[1]["text"]                                   # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time

import torch
from torch import nn

from .claims import MARGIN
from .experiments import (MODELS, PROFILES, ConfigError, RunConfig, RunStore, _final_lr, atomic_write_json,
                          build_model, load_model, make_config, resolve_device, run)
from .models import count_flops
from .surgery import compress_blocks

__all__ = ["SCORE_EPOCHS", "VAL_FRACTION", "step_config", "control_config", "network_cost", "choose_block",
           "mw_network", "score_candidate", "failure_path", "run_failure", "add_commands", "main"]

SCORE_EPOCHS = 1      # TM epochs of a candidate before its validation accuracy is read
VAL_FRACTION = 0.1    # the validation split of profiles that have none (smoke, cpu, paper)
SCORE_RULE = "mw-tm-v1"   # bump when the candidate score changes: it is part of a path's address
INIT, REGIME = "mean", "thawed"
ACC = "test_acc_at_best_val"
_OWN = ("dataset", "block", "init", "regime", "profile", "seed", "extra_blocks", "control")


# ----------------------------------------------------------------------------- configs

def _overrides(profile: str, overrides: dict) -> dict:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    own = sorted(set(_OWN) & set(overrides))
    if own:
        raise ConfigError(f"the failure path sets {', '.join(own)} itself; drop it from the overrides")
    out = dict(overrides)
    if not PROFILES[profile].val_fraction:   # the path chooses on validation data
        out.setdefault("val_fraction", VAL_FRACTION)
    return out


def step_config(dataset: str, blocks, profile: str = "campaign", seed: int = 0, **overrides) -> RunConfig:
    """The run config of the network with ``blocks`` compressed: a TM-MW child of the profile.

    Example:
        >>> step_config("cifar10", (4, 1), "campaign").name
        'b1+4-mean-thawed'
    """
    blocks = sorted(blocks)
    if not blocks:
        raise ConfigError("a step compresses at least one block")
    return make_config(dataset, blocks[0], INIT, REGIME, profile, seed,
                       extra_blocks=tuple(blocks[1:]) or None, **_overrides(profile, overrides))


def control_config(dataset: str, profile: str = "campaign", seed: int = 0, **overrides) -> RunConfig:
    """The continued-base control of the path (the campaign grid's ``control`` run)."""
    return make_config(dataset, 0, profile=profile, seed=seed, control=True, **_overrides(profile, overrides))


# ----------------------------------------------------------------------------- cost

def network_cost(cfg: RunConfig) -> dict:
    """Parameters and FLOPs (:func:`triage.models.count_flops`) of a config's architecture, compressed
    blocks included, at the config's input resolution."""
    model = build_model(cfg)
    if cfg.compressed_blocks:
        model = compress_blocks(model, cfg.compressed_blocks)
    c = cfg.resolution
    return count_flops(model, (model.in_channels, c, c))


# ----------------------------------------------------------------------------- the greedy step

def choose_block(scores) -> int:
    """The candidate with the highest score; ties go to the smallest block; NaN/None never win.

    Example:
        >>> choose_block({2: 0.71, 4: 0.74, 5: 0.74})
        4
    """
    ok = {int(b): float(s) for b, s in dict(scores).items() if s is not None and not math.isnan(float(s))}
    if not ok:
        raise ValueError(f"no candidate has a score: {dict(scores)!r}")
    return min(ok, key=lambda b: (-ok[b], b))


def _recalibrate_bn(model: nn.Module, loader, device, amp) -> None:
    """Re-estimate every BN's running statistics on ``loader`` (a cumulative average; no gradient)."""
    from .train import _autocast
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    moms = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with torch.no_grad():
            for x, _ in loader:
                with _autocast(torch.device(device), amp):
                    model(x)
    finally:
        for m, mom in zip(bns, moms):
            m.momentum = mom


def mw_network(parent: nn.Module, blocks) -> nn.Module:
    """``parent`` with ``blocks`` compressed, each new layer MW-initialised from ``parent``'s block.

    :func:`triage.surgery.compress_blocks`, then :func:`triage.init.parent_mean_` once per
    block (for a ResNet stage :func:`triage.resnet.stage_mean_`): the mean of that block's
    own kernels in the uncompressed parent. ``parent`` is not modified.
    """
    from .init import initialise
    child = compress_blocks(parent, blocks)
    for b in sorted(blocks):
        initialise(child, parent, b, INIT)
    return child


def score_candidate(parent: nn.Module, blocks, train_loader, val_loader, cfg: RunConfig, *,
                    epochs: int = SCORE_EPOCHS, lr: float | None = None, device="cpu", amp=None,
                    memory_format=torch.contiguous_format, progress: bool = False) -> float:
    """Validation accuracy of ``parent`` with ``blocks`` compressed, MW-initialised and briefly trained.

    ``epochs`` TM epochs with a fresh SGD at ``lr`` (default ``cfg.lr``; the child's start lr)
    and ``cfg``'s momentum and weight decay: the child's first epochs. ``epochs=0`` only
    re-estimates the BN statistics on the training split. Seeded with ``cfg.seed``;
    ``parent`` is not modified.
    """
    from .train import apply_regime, evaluate, make_optimizer, train_one_epoch
    child = mw_network(parent, blocks).to(device=device, memory_format=memory_format)
    torch.manual_seed(cfg.seed)   # as run() seeds before the child's first epoch (MW draws nothing)
    apply_regime(child, REGIME)
    if epochs == 0:
        _recalibrate_bn(child, train_loader, device, amp)
    else:
        opt = make_optimizer(child, cfg.lr if lr is None else lr, cfg.momentum, cfg.weight_decay)
        for e in range(epochs):
            train_loader.set_epoch(e)
            train_one_epoch(child, opt, train_loader, device=device, amp_dtype=amp, regime=REGIME,
                            progress=progress, desc=f"score {'+'.join(map(str, sorted(blocks)))}")
    return float(evaluate(child, val_loader, device=device, amp_dtype=amp)["acc"])


# ----------------------------------------------------------------------------- the path

def _path_key(dataset, profile, seed, score_epochs, overrides) -> tuple[RunConfig, str]:
    template = step_config(dataset, (1,), profile, seed, **overrides)
    blob = json.dumps({"base": template.parent().key(), "child": template.key(), "rule": SCORE_RULE,
                       "score_epochs": score_epochs}, sort_keys=True).encode()
    return template, hashlib.sha256(blob).hexdigest()[:12]


def _check_path_args(dataset, profile, seed, steps, score_epochs, overrides) -> int:
    overrides = _overrides(profile, overrides)
    n = MODELS.get(overrides.get("model", "vgg16_bn"))
    if n is None:
        raise ConfigError(f"unknown model {overrides['model']!r}; choose one of {', '.join(MODELS)}")
    steps = n if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= n:
        raise ConfigError(f"steps must be in 1..{n} (the model's blocks), got {steps!r}")
    if isinstance(score_epochs, bool) or not isinstance(score_epochs, int) or score_epochs < 0:
        raise ConfigError(f"score_epochs must be an integer >= 0, got {score_epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seeds must be integers >= 0, got {seed!r}")
    return steps


def failure_path(dataset: str, profile: str = "campaign", seed: int = 0, *, steps: int | None = None,
                 score_epochs: int = SCORE_EPOCHS, store: RunStore | None = None, data_root=None,
                 device="auto", progress: bool = True, log=print, on_step=None, **overrides) -> dict:
    """Walk (or resume) the greedy path of one seed and train its step networks; returns the record.

    Args:
        dataset, profile, seed: as for :func:`triage.make_config`.
        steps: steps to take (default: every block, 5 for VGG16).
        score_epochs: TM epochs of a candidate before it is scored (0: BN statistics only).
        store: the run store (default ``RunStore()``).
        on_step: called as ``on_step(event, text)`` with event "score", "train" or "trained" and a
            one-line status (for a progress bar).
        **overrides: further RunConfig fields of every network (``width``, ``train_per_class``, ...).

    Returns:
        the path record (also ``path.json``): settings and one entry per step with the
        candidates' scores, the chosen block, the step's blocks, its run's name, key and config.
    """
    from .loaders import get_split_loaders
    from .train import autocast_dtype, channels_last
    steps = _check_path_args(dataset, profile, seed, steps, score_epochs, overrides)
    store = store or RunStore()
    template, key = _path_key(dataset, profile, seed, score_epochs, overrides)
    n_blocks = MODELS[template.model]
    folder = store.root / profile / dataset / f"failure-s{seed}-{key}"
    rec_file = folder / "path.json"
    rec = json.loads(rec_file.read_text()) if rec_file.is_file() else {
        "dataset": dataset, "profile": profile, "seed": seed, "model": template.model, "key": key,
        "base_key": template.parent().key(), "score_epochs": score_epochs, "score_rule": SCORE_RULE,
        "overrides": overrides, "steps": []}
    say = on_step or (lambda event, text: None)
    dev = resolve_device(device)
    amp = autocast_dtype(dev, template.precision)
    cl = channels_last(amp, model=build_model(template), device=dev)
    fmt = torch.channels_last if cl else torch.contiguous_format
    parent = loaders = None

    def save():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(rec_file, rec)
        if store.results is not None:
            dest = store.results / profile / "failure" / dataset / folder.name
            dest.mkdir(parents=True, exist_ok=True)
            atomic_write_json(dest / "path.json", rec)

    chosen = [s["chosen"] for s in rec["steps"] if s.get("chosen") is not None]
    for k in range(1, steps + 1):
        if len(rec["steps"]) < k:
            rec["steps"].append({"step": k, "before": sorted(chosen), "scores": {}, "score_seconds": {},
                                 "chosen": None})
        st = rec["steps"][k - 1]
        if st["chosen"] is None:
            todo = [b for b in range(1, n_blocks + 1) if b not in chosen]
            if len(todo) == 1:
                st["scores"] = {str(todo[0]): None}     # the last block: nothing to choose
            for i, b in enumerate(todo if len(todo) > 1 else []):
                if str(b) in st["scores"]:
                    continue
                if parent is None:
                    say("score", f"seed {seed}: the base")
                    parent_dir = run(template.parent(), store, data_root=data_root, device=dev,
                                     progress=progress, log=log)
                    parent = load_model(parent_dir, dev).to(memory_format=fmt)
                    # the child's start lr, as run() sets it
                    lr0 = _final_lr(parent_dir) if template.child_lr == "continue" else template.lr
                    tr, va, _, _ = get_split_loaders(
                        dataset, root=data_root, batch_size=template.batch_size, device=dev,
                        train_per_class=template.train_per_class, test_per_class=template.test_per_class,
                        val_fraction=template.val_fraction, seed=seed, resolution=template.resolution,
                        flip=template.flip, channels_last=cl)
                    loaders = (tr, va)
                say("score", f"seed {seed} step {k}: scoring block {b} ({i + 1}/{len(todo)})")
                t0 = time.perf_counter()
                st["scores"][str(b)] = score_candidate(parent, sorted(chosen) + [b], *loaders, template,
                                                       epochs=score_epochs, lr=lr0, device=dev, amp=amp,
                                                       memory_format=fmt, progress=progress)
                st["score_seconds"][str(b)] = round(time.perf_counter() - t0, 2)
                save()
            st["chosen"] = choose_block(st["scores"]) if len(todo) > 1 else todo[0]
        chosen = sorted(set(chosen) | {st["chosen"]})
        cfg = step_config(dataset, chosen, profile, seed, **overrides)
        st.update(blocks=chosen, key=cfg.key(), name=cfg.name, config=_config_dict(cfg))
        save()
        say("train", f"seed {seed} step {k}: training {cfg.name}")
        run(cfg, store, data_root=data_root, device=dev, progress=progress, log=log)
        say("trained", f"seed {seed} step {k}: {cfg.name} done")
    return rec


def _config_dict(cfg: RunConfig) -> dict:
    import dataclasses
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def run_failure(dataset: str, profile: str = "campaign", seeds=(0,), *, steps: int | None = None,
                score_epochs: int = SCORE_EPOCHS, store: RunStore | None = None, data_root=None,
                device="auto", progress: bool = True, log=print, **overrides) -> list[dict]:
    """The control and the greedy path of every seed (:func:`failure_path`), with a progress bar.

    The bar counts trained networks (the control and each step); its text says which
    candidate is being scored or which network trains.
    """
    from tqdm import tqdm
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("give at least one seed")
    n = [_check_path_args(dataset, profile, s, steps, score_epochs, overrides) for s in seeds][0]
    store = store or RunStore()
    bar = tqdm(total=len(seeds) * (n + 1), desc=f"failure {dataset}", unit="net", disable=not progress,
               file=sys.stderr)
    recs = []
    try:
        for seed in seeds:
            bar.set_postfix_str(f"seed {seed}: control")
            run(control_config(dataset, profile, seed, **overrides), store, data_root=data_root,
                device=device, progress=False, log=log)
            bar.update(1)

            def on_step(event, text):
                bar.set_postfix_str(text)
                if event == "trained":
                    bar.update(1)
            recs.append(failure_path(dataset, profile, seed, steps=n, score_epochs=score_epochs, store=store,
                                     data_root=data_root, device=device, progress=False, log=log,
                                     on_step=on_step, **overrides))
    finally:
        bar.close()
    return recs


# ----------------------------------------------------------------------------- command line

def add_commands(subparsers) -> tuple[str, ...]:
    """Add ``failure`` to ``triage``'s subparsers; returns its name."""
    p = subparsers.add_parser("failure", help="compress to failure: a greedy path of compressed blocks per seed")
    p.add_argument("--dataset", required=True, help="one data set, e.g. cifar10")
    p.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="SEED", help="default: 0")
    p.add_argument("--steps", type=int, default=None, help="steps of the path (default: every block, 5)")
    p.add_argument("--score-epochs", type=int, default=SCORE_EPOCHS,
                   help=f"TM epochs of a candidate before scoring (default {SCORE_EPOCHS}; 0: BN statistics only)")
    p.add_argument("--margin", type=float, default=MARGIN, help=f"accuracy points (default {MARGIN:g})")
    p.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE", dest="overrides",
                   help="other RunConfig fields of every network, e.g. train_per_class=100")
    p.add_argument("--out", default=None, help="runs folder (default: $TRIAGE_RUNS or ./runs)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ("failure",)


def main(args) -> int:
    """Run ``triage failure`` from parsed arguments: 0 done, 2 bad input, 130 interrupted."""
    import pandas as pd
    from .data import DATASETS
    from .grid import _key_values
    from ._cli import guarded
    from .failure_report import load, verdict

    def body():
        if args.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
        if not args.margin > 0:
            raise ConfigError(f"--margin must be a positive number of points, got {args.margin}")
        overrides = _key_values(args.overrides, "--set")
        store = RunStore(args.out) if args.out else RunStore()
        log = (lambda m: None) if not args.no_progress else (lambda m: print(m, file=sys.stderr, flush=True))
        run_failure(args.dataset, args.profile, args.seeds, steps=args.steps, score_epochs=args.score_epochs,
                    store=store, data_root=args.data_root, device=args.device, progress=not args.no_progress,
                    log=log, **overrides)
        res = load(args.profile, args.dataset, store.results, store.root, score_epochs=args.score_epochs,
                   **overrides)   # the store's own results folder (None for --out: nothing else mixes in)
        table, summ = verdict(res, args.margin)
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
            print(res.steps.drop(columns=["key"]).to_string(index=False))
            print(f"\ncontrol {res.tag}:\n{res.control.to_string(index=False)}")
            print(f"\nloss against the control (points) per step:\n{table.to_string(index=False)}")
        print(f"\nverdict: {summ['text']}")
        return 0

    return guarded(body, "rerun the same command to resume (scored candidates and finished "
                   "networks are kept)")
