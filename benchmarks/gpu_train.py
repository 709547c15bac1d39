"""The AlexNet family on Fashion-MNIST on a GPU: time to test accuracy, per recipe.

    python benchmarks/gpu_train.py [--recipes textbook,textbook-bf16,small] [--device cuda] [--out F.json]

Recipes (all through ``cnn.train``; training on the 60,000 training images, test accuracy on the
10,000 test images after the last epoch; no validation split, no selection on the test split):

- ``textbook``: the 2012 ``alexnet`` at 224 x 224 (batches resized on the device), SGD lr 0.01,
  momentum 0.9, weight decay 5e-4, batch 128, 10 epochs, fp32, no augmentation.
- ``textbook-bf16``: the same with bf16 autocast and channels-last.
- ``small``: ``alexnet_small`` (28 x 28, no LRN) with the data resident on the GPU, bf16, one-cycle
  Nesterov SGD (peak lr 0.05, 25% warm-up), label smoothing 0.1, padded random crop and flip,
  batch 256, ``--small-epochs`` epochs.

Prints, per recipe, training seconds (the sum of the epochs' training time, evaluation excluded),
images per second and test top-1. ``--device cpu --n-train 2000 --recipes small`` checks the script
on a CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch

import cnn
from cnn.train import TrainConfig, evaluate, train
from experiments import datasets

RECIPES = {
    "textbook": dict(model="alexnet", options={}, epochs=10,
                     config=dict(batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
                                 weight_decay=5e-4, schedule="constant", augment=False, input_size=224,
                                 precision="fp32", channels_last=False)),
    "textbook-bf16": dict(model="alexnet", options={}, epochs=10,
                          config=dict(batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
                                      weight_decay=5e-4, schedule="constant", augment=False, input_size=224,
                                      precision="bf16", channels_last=True)),
    "small": dict(model="alexnet_small", options={"lrn": False}, epochs=None,
                  config=dict(batch_size=256, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                              weight_decay=5e-4, schedule="onecycle", pct_start=0.25, label_smoothing=0.1,
                              augment=True, crop_padding=2, flip=True, precision="bf16", data_on_device=True)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="textbook,textbook-bf16,small")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small-epochs", type=int, default=15)
    parser.add_argument("--n-train", type=int, default=None, help="use the first N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    train_set, test_set = datasets.load("fashion-mnist", "train"), datasets.load("fashion-mnist", "test")
    n = args.n_train or len(train_set)
    fit = (train_set.images[:n], train_set.labels[:n])
    test = (test_set.images, test_set.labels)
    device = torch.device(args.device)
    figures = {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor()
                                                                                     or platform.machine()),
        "torch": torch.__version__, "n_train": n, "recipes": {},
    }
    print(f"| recipe | model | epochs | train s | images/s | test top-1 |\n|---|---|---:|---:|---:|---:|")
    for name in args.recipes.split(","):
        recipe = RECIPES[name]
        epochs = recipe["epochs"] or args.small_epochs
        torch.manual_seed(args.seed)
        model = cnn.get_model(recipe["model"], num_classes=10, in_channels=1, **recipe["options"])
        config = TrainConfig(**recipe["config"], epochs=epochs, device=args.device, seed=args.seed, progress=False)
        t = time.perf_counter()
        history = train(model, fit, None, config)
        wall = time.perf_counter() - t
        metrics = evaluate(model, test, device=args.device, precision=config.precision, mean=history.mean,
                           std=history.std, input_size=config.input_size)
        rate = epochs * n / history.train_seconds
        figures["recipes"][name] = {"model": recipe["model"], "epochs": epochs, "train_seconds": history.train_seconds,
                                    "wall_seconds": wall, "images_per_s": rate, "test_top1": metrics["top1"]}
        print(f"| {name} | {recipe['model']} | {epochs} | {history.train_seconds:.1f} | {rate:,.0f} | "
              f"{100 * metrics['top1']:.2f}% |", flush=True)
    print(json.dumps(figures, indent=2, default=float))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2, default=float)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
