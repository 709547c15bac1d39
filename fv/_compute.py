"""Where ``fv`` computes, how much it holds at once, and how it writes files: one rule each.

Devices
-------
Every public ``device`` argument of ``fv`` (``dsift``, ``DiagonalGMM``, the Fisher-vector
functions, ``LinearSVM``, ``FisherVectorEncoder``) goes through :func:`resolve_device`:

* ``None``: the device of the input when it is a torch tensor, else the CPU;
* ``"cpu"``: the CPU, always;
* ``"cuda"``, ``"cuda:1"``, a ``torch.device``: that device; a clear error where CUDA is missing.

Chunk budgets
-------------
Work on many rows (descriptors, images, samples) is done in chunks whose working set is about
:func:`chunk_bytes` of the device: 16 MiB on the CPU (the chunk's temporaries stay in the
last-level cache of a laptop-class CPU) and 1 GiB on a GPU (few kernel launches; a small share of
any current card's memory). A caller states what one row of its chunk costs in bytes and gets the
row count from :func:`chunk_rows`; one unit (bytes) everywhere.

Files
-----
:func:`atomic_path` writes a file through a temporary name in the same folder and renames it into
place, so that a reader never sees a half-written file and a failed write leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["resolve_device", "chunk_bytes", "chunk_rows", "atomic_path", "CPU_CHUNK_BYTES", "CUDA_CHUNK_BYTES"]

CPU_CHUNK_BYTES = 16 << 20
CUDA_CHUNK_BYTES = 1 << 30


def resolve_device(device=None, data=None) -> torch.device:
    """The ``torch.device`` to compute on (module docstring): ``device`` when given, else the
    device of a tensor ``data``, else the CPU. Raises ``ValueError`` for a device torch does not
    know or a CUDA device on a machine without CUDA."""
    if device is None:
        return data.device if isinstance(data, torch.Tensor) else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a device; use None, 'cpu' or 'cuda' (or 'cuda:N')") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device=None or 'cpu'.")
    return resolved


def chunk_bytes(device: torch.device) -> int:
    """Working-set budget of one chunk on ``device``, in bytes."""
    return CPU_CHUNK_BYTES if torch.device(device).type == "cpu" else CUDA_CHUNK_BYTES


def chunk_rows(row_bytes: int, device: torch.device, *, minimum: int = 1) -> int:
    """Rows per chunk when one row costs ``row_bytes`` bytes of working set: the budget of
    ``device`` divided by that, at least ``minimum``."""
    return max(int(minimum), chunk_bytes(device) // max(1, int(row_bytes)))


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """``with atomic_path(p) as tmp: write(tmp)``: the file written at ``tmp`` (same folder, a
    hidden name ending in ``suffix``) replaces ``p`` when the block ends without error, and is
    removed when it raises. The folder is created when missing. The whole project writes its files
    through this one function."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename: a crash leaves the old file or the new
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
