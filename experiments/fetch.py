"""Obtain a data set: ``python -m experiments.fetch NAME [--data-dir DIR] [--method ...]``.

- Already present anywhere :func:`experiments.datasets.find` looks: nothing to do.
- Fashion-MNIST, where apt-get is available and we are root: Debian's package
  ``dataset-fashion-mnist`` (IDX files under ``/usr/share/datasets/fashion-mnist``).
- Otherwise torchvision's downloader (``torchvision.datasets.<Class>(root,
  download=True)``), which checks each file's MD5. It downloads into a hidden
  temporary folder beside the target, and the files are moved into
  ``data/<name>/`` (or ``--data-dir``) only once complete, so an interrupted
  download never leaves half-written files where the loaders look.

Afterwards every split is loaded once to prove the files are readable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import datasets as ds

__all__ = ["fetch", "apt_available", "torchvision_download"]


def apt_available() -> bool:
    """apt-get on PATH and running as root (so it can install)."""
    return shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(cmd, env=env).returncode != 0:
        # A fresh machine may not have package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)


def _torchvision_calls(name: str, root: str):
    """The torchvision constructor calls that download data set ``name`` into ``root``."""
    import torchvision.datasets as tvd

    if name in ("mnist", "fashion-mnist"):
        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        return [lambda: cls(root, train=True, download=True)]
    if name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        return [lambda: cls(root, train=True, download=True)]
    if name == "svhn":
        return [lambda s=s: tvd.SVHN(root, split=s, download=True) for s in ("train", "test", "extra")]
    if name == "stl10":
        return [lambda: tvd.STL10(root, split="train", download=True)]
    raise ValueError(f"no download for {name!r}")


def torchvision_download(name: str, target: Path) -> Path:
    """Download ``name`` with torchvision into ``target``, atomically per file.

    Files land in a temporary folder next to ``target`` first and are renamed
    into ``target`` after every download and checksum succeeded.
    """
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.download-", dir=target.parent))
    try:
        for call in _torchvision_calls(name, str(staging)):
            call()
        for entry in staging.iterdir():
            if entry.is_file() and entry.name.endswith((".tar.gz", ".tgz", ".zip")):
                continue  # an archive torchvision has already extracted
            dest = target / entry.name
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            os.replace(entry, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def fetch(name: str, data_dir: str | os.PathLike | None = None, *, method: str = "auto",
          log=print) -> Path:
    """Make data set ``name`` available; return the folder it is read from.

    ``method``: ``"auto"`` (present -> nothing; Fashion-MNIST -> apt where
    possible; else download), ``"apt"`` or ``"download"``.
    """
    if method not in ("auto", "apt", "download"):
        raise ValueError(f"method must be 'auto', 'apt' or 'download', not {method!r}")
    name = ds.canonical_name(name)
    spec = ds.DATASETS[name]
    if name == "imagefolder":
        raise ds.DatasetNotFoundError(
            "an image folder is your own data: nothing to download. Pass --data-dir ROOT to the "
            "experiment, where ROOT holds one folder per class (or train/ and test/ folders of them)"
        )
    if method == "auto":
        try:
            folder = ds.find(name, spec.splits[0], data_dir)
        except ds.DatasetNotFoundError:
            pass
        else:
            log(f"{spec.title} is already present in {folder}")
            return folder
    errors = []
    if method in ("auto", "apt") and spec.debian:
        if apt_available():
            log(f"installing Debian package {spec.debian}")
            try:
                _apt_install(spec.debian)
                return ds.find(name, spec.splits[0], data_dir)
            except (subprocess.CalledProcessError, ds.DatasetNotFoundError) as exc:
                errors.append(f"apt-get install {spec.debian}: {exc}")
        else:
            errors.append("apt-get: not available or not root")
    elif method == "apt":
        errors.append(f"{spec.title} has no Debian package")
    if method in ("auto", "download") and spec.torchvision:
        target = Path(data_dir) if data_dir is not None else ds.PROJECT_DATA / name
        log(f"downloading {spec.title} with torchvision into {target}")
        try:
            torchvision_download(name, target)
            return ds.find(name, spec.splits[0], target)
        except (OSError, RuntimeError, ds.DatasetNotFoundError) as exc:
            errors.append(f"torchvision download: {exc}")
    raise ds.DatasetNotFoundError(
        f"could not obtain {spec.title}:\n" + "\n".join(f"  - {e}" for e in errors)
        + "\nOther ways:\n" + "\n".join(f"  - {w}" for w in spec.how_to_get())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=[n for n in ds.DATASETS if n != "imagefolder"])
    parser.add_argument("--data-dir", default=None, help="where to put a download (default: data/<name>)")
    parser.add_argument("--method", default="auto", choices=("auto", "apt", "download"))
    args = parser.parse_args(argv)
    try:
        folder = fetch(args.name, args.data_dir, method=args.method)
    except ds.DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for split in ("train", "test"):
        try:
            data = ds.load(args.name, split, data_dir=folder)
        except ds.DatasetNotFoundError:
            continue
        print(f"{args.name} {split}: {len(data)} images of {data.images.shape[1:]} in {data.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
