"""Shared helpers of the benchmarks: device choice, timing, peak FLOP/s, machine description.

Not part of the library: the benchmarks import triage as users do and only add
the measuring around it.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's data sheets.
# Matched against torch.cuda.get_device_name() in order, so the more specific names come first.
GPU_BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),       # H100 PCIe data sheet (1513 with sparsity)
    ("H100 NVL", 835.0),        # H100 NVL, per GPU
    ("H100", 989.4),            # H100 SXM5 ("NVIDIA H100 80GB HBM3"): 1979 with sparsity
    ("H200", 989.4),            # H200 SXM: the H100 SXM's compute with more memory
    ("H800", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),            # A100 SXM/PCIe
    ("A800", 312.0),
    ("L40S", 362.1),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),             # AWS A10G (lower clocks than the A10)
    ("A10", 125.0),
    ("RTX 4090", 165.2),        # fp32 accumulate
    ("RTX 3090", 71.0),
    ("V100", 125.0),            # no bf16 tensor cores: fp16 figure, bf16 runs much slower
    ("T4", 65.0),               # fp16 figure; no bf16 tensor cores
)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; a cuda request without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for but torch sees no CUDA device")
    return d


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads for this benchmark process (never done in the library)."""
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a wall-clock interval covers the work it launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """``with Timer(device) as t: ...`` -> ``t.seconds``, synchronising the device on both ends.

    ``clock='wall'`` (default) measures elapsed time. ``clock='cpu'`` measures the CPU time
    of this process (all its threads, not its children): on a shared machine this barely
    moves with other people's load, so with one torch thread and no DataLoader workers it
    gives a load-robust ratio between variants (it cannot see time spent waiting).
    """

    def __init__(self, device: torch.device, clock: str = "wall"):
        if clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
        self.device = device
        self._now = time.perf_counter if clock == "wall" else time.process_time
        self.seconds = float("nan")

    def __enter__(self):
        sync(self.device)
        self._t0 = self._now()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.seconds = self._now() - self._t0
        return False


def median(xs) -> float:
    return float(statistics.median(xs))


def spread(xs) -> str:
    """``min-max`` of a list of numbers, for the tables."""
    return f"{min(xs):.0f}-{max(xs):.0f}"


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


_CLOCK_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    long n = 400000000L, x = 0;
    clock_t t0 = clock();
    for (long i = 0; i < n; i++)  /* 4 dependent 1-cycle adds; the loop's own uops overlap them */
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    printf("%f\n", 4.0 * n / ((double)(clock() - t0) / CLOCKS_PER_SEC) / 1e9);
    return (int)(x & 1);
}
"""


def measure_cpu_ghz() -> float | None:
    """The core clock under load, in GHz, from a chain of dependent integer adds (x86 + a C compiler).

    /proc/cpuinfo reports the nominal clock on VMs (2.6 GHz here) while the cores boost
    higher; the peak is cores x *this* clock x FLOP/cycle. Counts CPU time, so other
    processes' load does not bias it. None when no compiler or not x86-64.
    """
    import shutil
    import subprocess
    import tempfile

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    with tempfile.TemporaryDirectory() as d:
        src, exe = Path(d) / "clock.c", Path(d) / "clock"
        src.write_text(_CLOCK_C)
        try:
            subprocess.run([cc, "-O1", "-o", str(exe), str(src)], check=True, capture_output=True, timeout=60)
            runs = [float(subprocess.run([str(exe)], capture_output=True, text=True, timeout=60).stdout)
                    for _ in range(3)]
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
    return max(runs)


def describe_machine(device: torch.device) -> dict:
    """What RESULTS.md records beside every figure."""
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average": load_average(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def print_machine(info: dict) -> None:
    la = info["load_average"]
    print(f"torch {info['torch']}, python {info['python']}, device {info['device']}"
          + (f" ({info['gpu']}, {info['gpu_memory_gib']} GiB, CUDA {info['cuda']})" if "gpu" in info else ""))
    print(f"cpu: {info['cpu']}, {info['cpu_count']} logical cores, torch threads {info['threads']}"
          + (f", load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}" if la else ""))


def assumed_peak(device: torch.device, dtype: torch.dtype | None, cpu_ghz: float | None = None
                 ) -> tuple[float, str]:
    """(peak FLOP/s, why) of the device for training in `dtype` (None: fp32).

    GPU: the data-sheet dense bf16 tensor-core figure (fp32 runs are compared with it too,
    since bf16 is what the hardware can do). CPU: cores x clock x FLOP/cycle, with
    FLOP/cycle from the vector units the flags announce, and the clock `cpu_ghz` (measured
    with measure_cpu_ghz) or else /proc/cpuinfo's, which on a VM is the nominal one. Treat
    the CPU figure as an estimate; the measured GEMM ceiling (gemm_ceiling) is printed beside it.
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_BF16_PEAK_TFLOPS:
            if key in name:
                return tflops * 1e12, f"{name}: data-sheet dense bf16 tensor-core peak {tflops:g} TFLOP/s"
        return float("nan"), f"{name}: peak unknown (pass --peak-tflops)"
    flags = _cpu_flags()
    cores = torch.get_num_threads()
    mhz, source = (cpu_ghz * 1000, "measured") if cpu_ghz else (_cpu_mhz(), "/proc/cpuinfo")
    if mhz is None:
        return float("nan"), "CPU clock unknown (pass --peak-tflops)"
    # fp32 FLOP/cycle/core: two 256-bit FMA pipes (AVX2 cores; AMD Zen 4 runs AVX-512 on the
    # same two 256-bit pipes) = 2 pipes x 8 lanes x 2 FLOP = 32. Intel server cores with two
    # 512-bit FMA units reach 64; we cannot tell them apart from the flags, so 32 is assumed.
    fp32 = 32 if ("fma" in flags or "avx512f" in flags) else 16
    what = "2x256-bit FMA"
    per_cycle = fp32
    if dtype == torch.bfloat16:
        if "amx_bf16" in flags:
            per_cycle, what = 1024, "AMX-BF16 tile unit"      # 16x32x16 tile MACs per 16 cycles
        elif "avx512_bf16" in flags:
            per_cycle, what = 2 * fp32, "AVX512-BF16 VDPBF16PS (2 bf16 products per fp32 lane)"
        else:
            what += " (no native bf16: converted to fp32)"
    peak = cores * mhz * 1e6 * per_cycle
    return peak, (f"{cores} cores x {mhz / 1000:.2f} GHz ({source}) x {per_cycle} FLOP/cycle "
                  f"({what}) = {peak / 1e9:.0f} GFLOP/s, an estimate")


def gemm_ceiling(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5,
                 clock: str = "wall") -> float:
    """Measured FLOP/s of a large square matmul: what the device reaches on its best kernel."""
    if n is None:
        n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up (kernel selection, page faults)
    inner = 10 if device.type == "cpu" else 20
    times = []
    for _ in range(reps):
        with Timer(device, clock) as t:
            for _ in range(inner):
                a @ b
        times.append(t.seconds / inner)
    return 2 * n ** 3 / min(times)  # the ceiling: the best repetition


def train_step_flops(model: torch.nn.Module, in_shape: tuple[int, ...], num_classes: int) -> float:
    """FLOPs of one training step (forward + backward) per image, counted by FlopCounterMode.

    FlopCounterMode counts matmuls and convolutions (2 FLOP per multiply-add), which is
    >99% of VGG's work; BN, ReLU, pooling and the optimizer are not counted. Counted on a
    CPU copy with a batch of 2 (FLOPs are linear in the batch) so that it is cheap.
    """
    import copy

    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().train()
    x = torch.randn(2, *in_shape)
    y = torch.randint(0, num_classes, (2,))
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(m(x), y).backward()
    return fc.get_total_flops() / 2


def fmt_rate(flops: float) -> str:
    if flops != flops:  # nan
        return "n/a"
    return f"{flops / 1e12:.2f} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:.1f} GFLOP/s"
