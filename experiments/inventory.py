"""Experiment ``datasets``: what data is on this machine, and what it holds.

For every data set found (see :mod:`experiments.datasets` for where it is
looked for): one table of splits (images, image size, channels, classes,
images per class, checksum, source folder) and one table of images per class
per split, including the stratified validation part that the other experiments
carve out of ``train`` with the same fraction and seed. A ``summary`` table
lists every data set asked for, found or not, with the command that fetches
the missing ones.

    python -m experiments.run datasets
    python -m experiments.run datasets --datasets imagefolder --data-dir ~/photos
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import datasets as ds

DESCRIPTION = "inventory of the data sets on this machine: splits, image sizes, class counts, checksums"

# SVHN's 'extra' (531k images) and STL-10's 'unlabeled' (100k images) are large
# and unlabelled or auxiliary: listed only when asked for with --all-splits.
_AUXILIARY_SPLITS = {"extra", "unlabeled"}


@dataclass
class Config:
    datasets: list[str] = field(
        default_factory=lambda: [n for n in ds.DATASETS if n != "imagefolder"],
        metadata={"help": "data sets to look for (imagefolder needs --data-dir)"},
    )
    data_dir: str | None = field(default=None, metadata={"help": "folder to look in first"})
    validation_fraction: float = field(default=0.1, metadata={"help": "share of train carved out for validation"})
    seed: int = field(default=0, metadata={"help": "seed of the validation carve"})
    all_splits: bool = field(default=False, metadata={"help": "also read SVHN 'extra' and STL-10 'unlabeled'"})
    image_size: int | None = field(
        default=None, metadata={"help": "imagefolder: scale and centre-crop every image to this square size"}
    )


def _splits_found(name: str, config: Config) -> list[str]:
    found = []
    for split in ds.DATASETS[name].splits:
        if split in _AUXILIARY_SPLITS and not config.all_splits:
            continue
        try:
            ds.find(name, split, config.data_dir)
        except ds.DatasetNotFoundError:
            continue
        found.append(split)
    return found


def describe(data: ds.ImageSet) -> dict:
    """One row of the splits table."""
    counts = data.class_counts()
    return {
        "split": data.split,
        "images": len(data),
        "height": data.image_size[0],
        "width": data.image_size[1],
        "channels": data.channels,
        "classes": len(data.classes),
        "min_per_class": int(counts.min()) if counts.size else 0,
        "max_per_class": int(counts.max()) if counts.size else 0,
        "skipped": len(data.skipped),
        "sha256": data.checksum(),
        "source": str(data.source),
    }


def run(config: Config, ctx) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {}
    summary = []
    for name in config.datasets:
        name = ds.canonical_name(name)
        splits = _splits_found(name, config)
        if not splits:
            summary.append({"dataset": name, "status": "not found", "splits": "",
                            "images": 0, "classes": 0, "image_size": "",
                            "how_to_get": ds.DATASETS[name].how_to_get()[0]})
            ctx.log(f"{name}: not found")
            continue
        split_rows, class_rows = [], None
        for split in splits:
            with ctx.timer(f"load {name} {split}"):
                options = {"size": config.image_size} if name == "imagefolder" else {}
                data = ds.load(name, split, data_dir=config.data_dir, **options)
            ctx.record_dataset(data)
            split_rows.append(describe(data))
            if class_rows is None:
                class_rows = [{"label": i, "class": c} for i, c in enumerate(data.classes)]
            for row, n in zip(class_rows, data.class_counts()):
                row[split] = int(n)
            if split == "train":
                fit, val = ds.validation_split(data.labels, config.validation_fraction, seed=config.seed)
                fit_counts = np.bincount(data.labels[fit], minlength=len(data.classes))
                val_counts = np.bincount(data.labels[val], minlength=len(data.classes))
                for row, nf, nv in zip(class_rows, fit_counts, val_counts):
                    row["train_fit"], row["train_val"] = int(nf), int(nv)
            ctx.log(f"{name} {split}: {len(data)} images from {data.source}")
        tables[f"{name}-splits"] = split_rows
        tables[f"{name}-classes"] = class_rows
        first = split_rows[0]
        summary.append({"dataset": name, "status": "found", "splits": " ".join(splits),
                        "images": sum(r["images"] for r in split_rows), "classes": first["classes"],
                        "image_size": f"{first['height']}x{first['width']}x{first['channels']}",
                        "how_to_get": ""})
    return {"summary": summary, **tables}
