"""Results on disk: atomic files, CSV and Markdown tables, the run manifest.

Layout of one run::

    results/<experiment>/<run-id>/
        <table>.csv        one file per table, header row + one row per record
        <table>.md         the same table in Markdown
        manifest.json      config, seed, data sets (name, split, checksum),
                           package versions, git commit, machine, timings, status

Every file is written to a temporary file in the same folder and renamed into
place (``os.replace``), so a reader never sees a half-written file and an
interrupted run never leaves a truncated table behind. ``manifest.json`` is
written last; its ``status`` is ``"complete"`` only when the experiment finished.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import resource
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from fv._compute import atomic_path  # the one temporary-file-and-rename rule of the project

__all__ = [
    "atomic_path",
    "atomic_write",
    "write_table",
    "markdown_table",
    "new_run_id",
    "package_versions",
    "git_commit",
    "machine_info",
    "write_json",
    "PeakMemory",
]

#: Distributions whose versions every manifest records.
PACKAGES = (
    "numpy", "scipy", "scikit-learn", "opencv-python-headless", "opencv-python", "torch",
    "torchvision", "joblib", "tqdm", "matplotlib", "pillow",
)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def _columns(rows: Sequence[Mapping]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    return cols


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    return str(value)


def csv_text(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as CSV text (columns in first-seen order unless given)."""
    columns = list(columns or _columns(rows))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buf.getvalue()


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as a GitHub-flavoured Markdown table; numbers right-aligned."""
    columns = list(columns or _columns(rows))
    cells = [[_cell(row.get(c)).replace("|", "\\|") for c in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool) for row in rows)
        for c in columns
    ]
    widths = [max([len(c), 3, *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values):
        out = []
        for v, w, num in zip(values, widths, numeric):
            out.append(v.rjust(w) if num else v.ljust(w))
        return "| " + " | ".join(out) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(columns), rule, *(line(r) for r in cells)]) + "\n"


def write_table(folder: str | os.PathLike, name: str, rows: Sequence[Mapping],
                columns: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write ``<name>.csv`` and ``<name>.md`` into ``folder``, atomically."""
    if not rows:
        raise ValueError(f"table {name!r} has no rows; an experiment must not write empty tables")
    folder = Path(folder)
    columns = list(columns or _columns(rows))
    return (
        atomic_write(folder / f"{name}.csv", csv_text(rows, columns)),
        atomic_write(folder / f"{name}.md", markdown_table(rows, columns)),
    )


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def new_run_id(now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: UTC time plus 4 random hex digits (no collisions
    between runs started in the same second)."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{os.urandom(2).hex()}"


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(repo: str | os.PathLike | None = None) -> dict[str, object] | None:
    """``{"commit": sha, "dirty": bool}`` of the project checkout, or None outside git."""
    repo = Path(repo) if repo else Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": bool(status.strip())}


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, object]:
    """Host, OS, CPU model and count, memory, and the CUDA devices torch sees."""
    info: dict[str, object] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


# --------------------------------------------------------------------------- peak memory of a stage


def _rss_bytes(pid: int | str = "self") -> int:
    """Proportional set size of a process (shared pages split between their users, so that the
    sum over processes counts shared libraries once), from /proc; its RSS where PSS is not
    available; 0 when the process is gone or /proc is missing."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _child_pids(pid: int | str = "self") -> list[str]:
    """Direct children of a process, from /proc/<pid>/task/*/children (Linux)."""
    pids: list[str] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                pids += (task / "children").read_text().split()
            except OSError:
                continue
    except OSError:
        pass
    return pids


def _tree_rss_bytes() -> int:
    """Memory of this process plus its children and grandchildren (joblib workers, data loaders)."""
    total = _rss_bytes()
    for child in _child_pids():
        total += _rss_bytes(child) + sum(_rss_bytes(g) for g in _child_pids(child))
    return total


class PeakMemory:
    """Peak resident memory of a stage: ``with PeakMemory() as m: ...; m.peak_bytes``.

    On Linux a background thread samples, every ``interval`` seconds, the memory of this process
    plus its child processes (parallel workers; proportional set size, so shared libraries count
    once), so that each stage gets its own peak; the samples can miss a spike shorter than the
    interval. Elsewhere the process's lifetime peak
    (``getrusage``) is used, which covers earlier stages too. ``cuda_peak_bytes`` is
    ``torch.cuda.max_memory_allocated`` over the stage when CUDA is in use, else None.
    """

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak_bytes = 0
        self.cuda_peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = Path("/proc/self/statm").exists()

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, _tree_rss_bytes())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "PeakMemory":
        if _cuda_in_use():
            import torch

            torch.cuda.reset_peak_memory_stats()
        if self._proc:
            self.peak_bytes = _tree_rss_bytes()
            self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, _tree_rss_bytes())
        else:
            self.peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if _cuda_in_use():  # reset at the start, or first used during the stage
            import torch

            self.cuda_peak_bytes = int(torch.cuda.max_memory_allocated())

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / 1024**3


def _cuda_in_use() -> bool:
    """True when torch is imported and has initialised CUDA in this process."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
