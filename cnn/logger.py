"""What the trainer reports while it runs: a progress bar per epoch and one line per epoch.

Each finished epoch's row (see :class:`cnn.train.History`) is appended as one JSON object per line
to the ``log`` file, when one is given, and summarised under the bar when the bar is shown::

    epoch 3/10  loss 0.4121  top1 0.8532  val_loss 0.3917  val_top1 0.8610  41234 img/s
"""

from __future__ import annotations

import contextlib
import json
import sys

__all__ = ["EpochLogger"]


class EpochLogger:
    """Progress bar (tqdm) and JSON-lines log of a run of ``total_epochs`` epochs.

    ``log``: path of the JSON-lines file (appended), or None. ``progress``: show the bar; None:
    only when stderr is a terminal.
    """

    def __init__(self, total_epochs: int, *, log: str | None, progress: bool | None) -> None:
        self.total_epochs, self.log = total_epochs, log
        self.show = progress if progress is not None else sys.stderr.isatty()

    @contextlib.contextmanager
    def progress(self, epoch: int, steps: int):
        """A context that shows the bar of ``epoch`` (``steps`` long) and yields the function to
        call after each step (a no-op without a bar); the bar is removed on leaving."""
        if not self.show:
            yield lambda: None
            return
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"epoch {epoch}/{self.total_epochs}", leave=False, dynamic_ncols=True)
        try:
            yield bar.update
        finally:
            bar.close()

    def record(self, row: dict) -> None:
        """Append ``row`` to the log file and print its summary line under the bar."""
        if self.log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        if self.show:
            from tqdm.auto import tqdm

            val = "" if row["val_top1"] is None else f"  val_loss {row['val_loss']:.4f}  val_top1 {row['val_top1']:.4f}"
            tqdm.write(f"epoch {row['epoch']}/{self.total_epochs}  loss {row['train_loss']:.4f}  "
                       f"top1 {row['train_top1']:.4f}{val}  {row['images_per_second']:.0f} img/s")
