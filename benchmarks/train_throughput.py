"""Training throughput: triage's training path against the loop a user would write.

Same process, same model (VGG16-BN at --width, 32 px), same images (a random subset of
the real train split from the data root), same batch size, same optimizer. Variants:

* ``naive-wN``: a ``Dataset`` that returns one image at a time -- a PIL image through
  torchvision's RandomHorizontalFlip/ToTensor/Normalize, exactly as
  ``torchvision.datasets.CIFAR10(transform=...)`` does -- a ``DataLoader`` with N workers
  (pinned memory on CUDA), fp32, default memory format, ``loss.item()`` every batch as
  the PyTorch tutorials log it. Several N may be measured; the fastest is "naive".
* ``triage-fp32``: triage's data path (``triage.loaders.DeviceLoader``: uint8 images resident
  on the device, batched flip + normalise there) and ``triage.train.train_one_epoch``,
  in fp32 and the default memory format. Splits the gain into data path and precision.
* ``triage``: what ``triage.run`` trains with: ``DeviceLoader`` + ``train_one_epoch`` with
  ``autocast_dtype(device, 'auto')`` in channels_last (``triage.train.channels_last``).
* ``triage-fp32-nchw`` (where ``auto`` is fp32): the same in NCHW, fp32's layout before
  channels_last was measured faster for it too.

Each timed repetition is one epoch of --batches batches (the first epoch of each variant is
the warm-up, not timed); the variants take turns, so a change in machine load hits all of
them alike. Reported: median images/second (min-max over repetitions), the ratio to the
best naive variant, and the achieved FLOP/s (FlopCounterMode count x images/s) beside the
device's assumed peak and a measured large-GEMM ceiling.

    python benchmarks/train_throughput.py --quick          # CI: ~1 min on 2 CPU cores
    python benchmarks/train_throughput.py                  # full: the RESULTS.md figures
    python benchmarks/train_throughput.py --device cuda --width 1 --batch-size 512
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import triage  # noqa: E402
from triage.data import channel_stats, load_split, spec  # noqa: E402
from triage.loaders import DeviceLoader  # noqa: E402
from triage.train import autocast_dtype, make_optimizer, train_one_epoch  # noqa: E402
from triage.train import channels_last as triage_channels_last  # noqa: E402


# ----------------------------------------------------------------------------- naive path
class NaiveImages(torch.utils.data.Dataset):
    """One image per ``__getitem__``, transformed on the CPU as torchvision's data sets do.

    Holds the images as torchvision's CIFAR10 does (``.data`` uint8 (N, H, W, C), ``.targets``
    a list) and applies RandomHorizontalFlip -> ToTensor -> Normalize to a PIL image. Without
    torchvision/Pillow, the same three steps are done per image in plain torch.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std, flip: bool = True):
        data = x.permute(0, 2, 3, 1).contiguous().numpy()
        self.data = data[..., 0] if data.shape[-1] == 1 else data  # grey images as (H, W), mode 'L'
        self.targets = y.tolist()
        self.mean, self.std, self.flip = mean, std, flip
        try:
            from PIL import Image

            from triage._compat import import_torchvision
            T = import_torchvision().transforms
        except ImportError:
            self.kind, self.transform = "plain torch per image", None
        else:
            self._to_pil = Image.fromarray
            steps = ([T.RandomHorizontalFlip()] if flip else []) + [T.ToTensor(), T.Normalize(mean, std)]
            self.kind, self.transform = "PIL + torchvision transforms", T.Compose(steps)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        if self.transform is not None:
            return self.transform(self._to_pil(self.data[i])), self.targets[i]
        img = torch.from_numpy(self.data[i])
        img = (img.unsqueeze(-1) if img.ndim == 2 else img).permute(2, 0, 1).float() / 255
        if self.flip and torch.rand(()) < 0.5:
            img = img.flip(-1)
        m = torch.tensor(self.mean).view(-1, 1, 1)
        s = torch.tensor(self.std).view(-1, 1, 1)
        return (img - m) / s, self.targets[i]


def naive_loader(x, y, mean, std, batch_size: int, workers: int, device: torch.device):
    ds = NaiveImages(x, y, mean, std)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    return loader, ds.kind


def naive_epoch(model, optimizer, loader, device: torch.device) -> float:
    """The loop of the PyTorch CIFAR-10 tutorial: fp32, a host sync per batch for the log."""
    model.train()
    running = 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        running += loss.item()
    return running


# ----------------------------------------------------------------------------- variants
class Variant:
    """A model, its optimizer and an epoch function, timed one epoch at a time."""

    def __init__(self, name, model, optimizer, run_epoch, dtype, note):
        self.name, self.model, self.optimizer = name, model, optimizer
        self.run_epoch, self.dtype, self.note = run_epoch, dtype, note
        self.seconds: list[float] = []


def build_model(args, sp, device, memory_format=torch.contiguous_format):
    torch.manual_seed(args.seed)  # every variant starts from the same weights
    model = triage.vgg16_bn(sp.num_classes, in_channels=sp.in_channels, width=args.width,
                            resolution=args.resolution)
    model = model.to(device=device, memory_format=memory_format)
    return model, make_optimizer(model, lr=args.lr, momentum=0.9, weight_decay=5e-4)


def make_variants(args, sp, x, y, mean, std, device) -> list[Variant]:
    variants = []
    for w in args.naive_workers:
        model, opt = build_model(args, sp, device)
        loader, kind = naive_loader(x, y, mean, std, args.batch_size, w, device)
        variants.append(Variant(
            f"naive-w{w}", model, opt,
            lambda m=model, o=opt, ld=loader: naive_epoch(m, o, ld, device), None,
            f"{kind}, DataLoader({w} workers), fp32, NCHW"))

    def triage_variant(name, amp, compile_model=False, channels_last=None):
        # The same choice triage.run makes (triage.train.channels_last), unless told otherwise
        channels_last = triage_channels_last(amp) if channels_last is None else channels_last
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model, opt = build_model(args, sp, device, fmt)
        loader = DeviceLoader(x, y, batch_size=args.batch_size, mean=mean, std=std, train=True,
                              device=device, flip=True, seed=args.seed, channels_last=channels_last,
                              drop_last=True, resolution=args.resolution)
        net = torch.compile(model, mode=args.compile_mode) if compile_model else model
        prec = "fp32" if amp is None else f"{str(amp).removeprefix('torch.')} autocast"
        note = (f"DeviceLoader + train_one_epoch, {prec}, {'channels_last' if channels_last else 'NCHW'}"
                f"{', torch.compile' + (f'({args.compile_mode})' if args.compile_mode else '') if compile_model else ''}")
        return Variant(name, model, opt,
                       lambda: train_one_epoch(net, opt, loader, device=device, amp_dtype=amp, progress=False),
                       amp, note)

    amp = autocast_dtype(device, args.precision)
    if not args.no_fp32_split and amp is not None:
        variants.append(triage_variant("triage-fp32", None))
    if amp is None and not args.no_fp32_split:
        variants.append(triage_variant("triage-fp32-nchw", None, channels_last=False))
    variants.append(triage_variant("triage", amp))
    if args.compile:
        variants.append(triage_variant("triage+compile", amp, compile_model=True))
    return variants


# ----------------------------------------------------------------------------- profile
def profile_variant(v: Variant, device: torch.device, rows: int = 18) -> str:
    """torch.profiler table of one epoch of a variant: where its time goes."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        v.run_epoch()
        C.sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few short repetitions (CI; ~1 min on 2 cores)")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "mnist", "stanford_dogs"])
    p.add_argument("--resolution", type=int, default=32, help="input size in px (the campaign: 64 for stanford_dogs)")
    p.add_argument("--width", type=float, default=0.5, help="VGG16-BN channel multiplier (paper: 1)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=None, help="batches per timed epoch (full 20, quick 3)")
    p.add_argument("--reps", type=int, default=None, help="timed epochs per variant (full 5, quick 3)")
    p.add_argument("--naive-workers", default="auto",
                   help="comma list of DataLoader worker counts for the naive loop; auto: "
                        "0 and min(4, cores) on CPU, min(8, cores) on CUDA; none: no naive variant")
    p.add_argument("--precision", default="auto", help="triage's precision: auto | bf16 | fp32")
    p.add_argument("--no-fp32-split", action="store_true",
                   help="skip the triage-fp32 (on bf16 machines) or triage-fp32-nchw (on fp32 ones) variant")
    p.add_argument("--compile", action="store_true", help="also time triage with torch.compile(model)")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode for --compile (e.g. reduce-overhead: CUDA graphs, which "
                        "removes the per-kernel launch cost that bounds small models on a GPU)")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark = True for every variant (triage.run leaves it off)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall: elapsed time (the figure to report); cpu: this process's CPU time, "
                        "a load-robust cross-check on a shared CPU (use with --threads 1 --naive-workers 0)")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the assumed device peak")
    p.add_argument("--no-gemm", action="store_true", help="skip the measured GEMM ceiling")
    p.add_argument("--profile", default="", help="comma list of variants to profile after timing "
                                                 "(torch.profiler table of one epoch)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    args.batches = args.batches or (3 if args.quick else 20)
    args.reps = args.reps or (3 if args.quick else 5)
    if min(args.batches, args.reps, args.batch_size) < 1 or not args.width > 0:
        p.error("--batches, --reps, --batch-size and --width must be positive")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = C.resolve_device(args.device)
    C.set_threads(args.threads)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    cores = os.cpu_count() or 1
    if args.naive_workers == "auto":
        args.naive_workers = [min(8, cores)] if device.type == "cuda" else sorted({0, min(4, cores)})
    else:
        try:
            args.naive_workers = [int(w) for w in args.naive_workers.split(",") if w not in ("", "none")]
        except ValueError:
            raise SystemExit(f"error: --naive-workers takes comma-separated integers, auto or none; "
                             f"got {args.naive_workers!r}") from None

    if args.clock == "cpu" and (device.type != "cpu" or any(args.naive_workers)):
        raise SystemExit("error: --clock cpu counts this process only: use it on CPU with --naive-workers 0")
    info = C.describe_machine(device)
    print("command: python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])))
    C.print_machine(info)

    sp = spec(args.dataset)
    x_all, y_all = load_split(args.dataset, "train", args.data_root)
    n = args.batches * args.batch_size
    if n > len(y_all):
        raise SystemExit(f"error: {args.batches} batches of {args.batch_size} need {n} images; "
                         f"{args.dataset} has {len(y_all)}")
    if args.naive_workers and x_all.shape[-1] != args.resolution:
        raise SystemExit(f"error: the naive variants do not resize: {args.dataset} is stored at {x_all.shape[-1]} px, "
                         f"--resolution is {args.resolution}; add --naive-workers none")
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(y_all), generator=g)[:n]
    x, y = x_all[idx].contiguous(), y_all[idx].contiguous()
    mean, std = channel_stats(args.dataset, args.data_root)
    print(f"model: VGG16-BN width {args.width:g}, {sp.in_channels}x{args.resolution}x{args.resolution} "
          f"{args.dataset}, batch {args.batch_size}; "
          f"{args.reps} timed epochs of {args.batches} batches ({n} real images) per variant, "
          "after one warm-up epoch")

    variants = make_variants(args, sp, x, y, mean, std, device)
    flops_img = C.train_step_flops(variants[-1].model, (sp.in_channels, args.resolution, args.resolution),
                                   sp.num_classes)

    t_start = time.perf_counter()
    for v in variants:          # warm-up: worker start-up, allocator, oneDNN/cuDNN kernel choice
        v.run_epoch()
    for _ in range(args.reps):  # round-robin so that load changes hit every variant alike
        for v in variants:
            with C.Timer(device, args.clock) as t:
                v.run_epoch()
            v.seconds.append(t.seconds)
    bench_seconds = time.perf_counter() - t_start

    cpu_ghz = C.measure_cpu_ghz() if device.type == "cpu" and not args.peak_tflops else None
    rows = []
    for v in variants:
        rates = [n / s for s in v.seconds]
        peak, why = ((args.peak_tflops * 1e12, "--peak-tflops") if args.peak_tflops
                     else C.assumed_peak(device, v.dtype, cpu_ghz))
        rows.append({"variant": v.name, "setup": v.note, "images_per_s": C.median(rates),
                     "min": min(rates), "max": max(rates), "dtype": str(v.dtype or torch.float32),
                     "peak_flops": peak, "peak_why": why})
    naive = [r for r in rows if r["variant"].startswith("naive")]
    best_naive = max(naive, key=lambda r: r["images_per_s"]) if naive else None
    for r in rows:
        r["flops"] = r["images_per_s"] * flops_img
        r["vs_naive"] = r["images_per_s"] / best_naive["images_per_s"] if best_naive else float("nan")

    ceilings = {}
    if not args.no_gemm:
        for dt in {torch.float32, *(v.dtype for v in variants if v.dtype is not None)}:
            ceilings[str(dt)] = C.gemm_ceiling(device, dt, clock=args.clock)

    print(f"\nFLOPs per training image (FlopCounterMode, forward+backward): {flops_img / 1e9:.3f} GFLOP")
    if args.clock == "cpu":
        print(f"\nclock: CPU time of this process ({torch.get_num_threads()} threads): 'images/s' below "
              "are images per CPU-second, not the wall-clock figure")
    print(f"\n| variant | setup | images/s (median) | min-max | vs naive | achieved | % of assumed peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        pct = 100 * r["flops"] / r["peak_flops"] if r["peak_flops"] == r["peak_flops"] else float("nan")
        print(f"| {r['variant']} | {r['setup']} | {r['images_per_s']:.0f} | {r['min']:.0f}-{r['max']:.0f} | "
              f"{r['vs_naive']:.2f}x | {C.fmt_rate(r['flops'])} | {pct:.1f}% |".replace("nanx", "-"))
    print("\nassumed peaks:")
    for why in dict.fromkeys(r["peak_why"] for r in rows):
        print(f"  {why}")
    for dt, fl in ceilings.items():
        print(f"  measured GEMM ceiling {dt}: {C.fmt_rate(fl)}")
    tri = next(r for r in rows if r["variant"] == "triage")
    if best_naive:
        print(f"\ntriage / naive (best of {', '.join(r['variant'] for r in naive)}): "
              f"{tri['vs_naive']:.2f}x   [{bench_seconds:.0f} s of timing]")
    # issue 7's targets: CPU triage >= 3x naive (width 1/2); GPU >= 40% of bf16 peak (width 1)
    if best_naive and device.type == "cpu":
        print(f"target: triage >= 3x naive -> {tri['vs_naive']:.2f}x: "
              + ("met" if tri["vs_naive"] >= 3 else f"missed by {3 / tri['vs_naive']:.2f}x"))
    if device.type == "cuda" and tri["peak_flops"] == tri["peak_flops"]:
        pct = 100 * tri["flops"] / tri["peak_flops"]
        print(f"target: triage >= 40% of bf16 peak (at width 1) -> {pct:.1f}% at width {args.width:g}: "
              + ("met" if pct >= 40 else f"missed by {40 / pct:.2f}x"))
    la = C.load_average()
    if la:
        print(f"load average after: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")

    for name in [s for s in args.profile.split(",") if s]:
        v = next((v for v in variants if v.name == name), None)
        if v is None:
            raise SystemExit(f"error: --profile {name!r} is not one of {', '.join(v.name for v in variants)}")
        print(f"\ntorch.profiler, one epoch of {name} ({v.note}):")
        print(profile_variant(v, device))

    result = {"machine": info, "args": {k: v for k, v in vars(args).items()},
              "gflop_per_image": flops_img / 1e9, "rows": rows, "gemm_ceiling": ceilings,
              "images_per_epoch": n}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


if __name__ == "__main__":
    main()
