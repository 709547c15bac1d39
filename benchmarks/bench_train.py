"""Training throughput of ``cnn.train`` against a plain textbook PyTorch loop, side by side.

    python benchmarks/bench_train.py [--images 6400] [--windows 3] [--threads N]
                                     [--variants plain,ours,ours-noaug,ours-bf16,ours-cl,ours-bf16-cl,
                                                 ours-nolrn,ours-bf16-nolrn]

Model: ``cnn.get_model("alexnet_small", num_classes=10, in_channels=1)`` (Kaiming init, seed 0) on
the first ``--images`` images of the Fashion-MNIST training split (28 x 28 grey), batch 128, on the
CPU. Each variant trains for one warm-up pass over the subset and then ``--windows`` timed passes;
the figure is the median images/s of the timed passes (training only: no evaluation).

- ``plain``: the textbook loop: ``TensorDataset`` of float images in [0, 1] +
  ``DataLoader(batch_size=128, shuffle=True)``, per-batch normalisation ``(x - mean) / std``,
  fp32, ``SGD(lr=0.01, momentum=0.9)``, ``cross_entropy``, no augmentation.
- ``ours``: ``cnn.train.train`` as the experiments use it: uint8 data set, per-epoch permutation,
  padded random crop (2 px) on the batch, SGD + Nesterov, one-cycle schedule, two weight-decay
  groups, divergence check, fp32.
- ``ours-noaug``: the same without augmentation (the same work as ``plain``).
- ``ours-bf16`` / ``ours-cl`` / ``ours-bf16-cl``: bf16 autocast and/or channels-last on the CPU.
- ``ours-nolrn`` / ``ours-bf16-nolrn``: the model without its two LRN layers (``lrn=False``), fp32
  or bf16; ``ours-bf16-nolrn`` is the CPU setting of the ``fv_vs_alexnet`` experiment on CPUs with
  native bfloat16. These change the model, not only the loop.

The ratio column is ours / plain throughput (> 1: ours is faster). Every variant runs in this one
process, in the order given, ``--rounds`` times (the medians pool the rounds). On a shared CPU the
numbers are noisy: quote ratios, with the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cnn  # noqa: E402
from cnn.train import TrainConfig, train  # noqa: E402

BATCH = 128


def build_model(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    return cnn.get_model("alexnet_small", num_classes=10, in_channels=1, **options)


def plain_loop(images, labels, passes: int) -> list[float]:
    """Images/s of each pass of the textbook loop."""
    model = build_model()
    model.train()
    x = torch.from_numpy(images).float().div_(255).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]
    y = torch.from_numpy(labels)
    mean, std = x.mean(), x.std()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rates = []
    for _ in range(passes):
        t = time.perf_counter()
        n = 0
        for xb, yb in loader:
            xb = (xb - mean) / std
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(yb)
        rates.append(n / (time.perf_counter() - t))
    return rates


def ours(images, labels, passes: int, *, augment: bool, precision: str, channels_last: bool,
         lrn: bool = True) -> list[float]:
    """Images/s of each epoch of ``cnn.train.train`` (its own training-only timing)."""
    model = build_model(lrn=lrn)
    cfg = TrainConfig(epochs=passes, batch_size=BATCH, lr=0.01, flip=False, augment=augment,
                      precision=precision, channels_last=channels_last, device="cpu", progress=False)
    history = train(model, (images, labels), config=cfg)
    return [row["images_per_second"] for row in history.epochs]


VARIANTS = {
    "plain": lambda x, y, p: plain_loop(x, y, p),
    "ours": lambda x, y, p: ours(x, y, p, augment=True, precision="fp32", channels_last=False),
    "ours-noaug": lambda x, y, p: ours(x, y, p, augment=False, precision="fp32", channels_last=False),
    "ours-bf16": lambda x, y, p: ours(x, y, p, augment=True, precision="bf16", channels_last=False),
    "ours-cl": lambda x, y, p: ours(x, y, p, augment=True, precision="fp32", channels_last=True),
    "ours-bf16-cl": lambda x, y, p: ours(x, y, p, augment=True, precision="bf16", channels_last=True),
    "ours-nolrn": lambda x, y, p: ours(x, y, p, augment=True, precision="fp32", channels_last=False, lrn=False),
    "ours-bf16-nolrn": lambda x, y, p: ours(x, y, p, augment=True, precision="bf16", channels_last=False, lrn=False),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6400, help="training images per pass (default 6400)")
    ap.add_argument("--windows", type=int, default=3, help="timed passes per variant after one warm-up pass")
    ap.add_argument("--rounds", type=int, default=1, help="times the whole list of variants is run")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--variants", default="plain,ours,ours-noaug",
                    help=f"comma-separated, from {','.join(VARIANTS)} (default plain,ours,ours-noaug)")
    args = ap.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if "plain" not in names:
        names.insert(0, "plain")
    if args.threads:
        torch.set_num_threads(args.threads)

    from experiments.datasets import load

    data = load("fashion-mnist", "train")
    images, labels = data.images[:args.images], data.labels[:args.images]

    rates: dict[str, list[float]] = {v: [] for v in names}
    for _ in range(args.rounds):
        for v in names:
            rates[v] += VARIANTS[v](images, labels, 1 + args.windows)[1:]  # drop the warm-up pass

    plain = statistics.median(rates["plain"])
    print(f"# cnn.train vs plain PyTorch loop: alexnet_small, Fashion-MNIST 28x28x1, {len(images)} images/pass, "
          f"batch {BATCH}, CPU")
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.windows * args.rounds} timed passes")
    print(f"# python {' '.join(sys.argv)}")
    print()
    print("| variant | images/s (median) | min | max | ratio vs plain |")
    print("|---|---:|---:|---:|---:|")
    for v in names:
        med = statistics.median(rates[v])
        print(f"| {v} | {med:,.0f} | {min(rates[v]):,.0f} | {max(rates[v]):,.0f} | {med / plain:.2f} |")


if __name__ == "__main__":
    main()
