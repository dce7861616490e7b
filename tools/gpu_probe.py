"""How many width-1/8 VGG16-BN trainings one GPU runs at once: aggregate images/s for k processes.

Each process trains on synthetic 32-px batches (bf16 autocast, channels_last, batch 128,
as triage.run does) for --seconds and reports its images/s; the sum is the GPU's throughput
at that concurrency. Small networks are bound by the kernel launches of one CPU thread, so
k processes should scale until the GPU's queue is full.

    python tools/gpu_probe.py --jobs 1 4 8 12 16 --seconds 8
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def _worker(seconds: float, width: float, batch: int, q) -> None:
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    from triage.models import vgg16_bn
    dev = torch.device("cuda")
    model = vgg16_bn(10, width=width).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            step()
        n += 10
    torch.cuda.synchronize()
    q.put(n * batch / (time.perf_counter() - t0))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 4, 8, 12])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--width", type=float, default=1 / 8)
    p.add_argument("--batch-size", type=int, default=128)
    a = p.parse_args()
    ctx = mp.get_context("spawn")
    for k in a.jobs:
        q = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(a.seconds, a.width, a.batch_size, q)) for _ in range(k)]
        for pr in procs:
            pr.start()
        rates = [q.get(timeout=300) for _ in procs]
        for pr in procs:
            pr.join()
        print(f"jobs {k:2d}: {sum(rates):8.0f} images/s in all, {sum(rates) / k:7.0f} per process "
              f"(width {a.width:g}, batch {a.batch_size})", flush=True)


if __name__ == "__main__":
    main()
