"""Run an experiment: ``python -m experiments.run NAME [options]``.

Each experiment is a module with a ``DESCRIPTION``, a ``Config`` dataclass (its
fields become the command-line options; help text in field metadata) and
``run(config, ctx) -> {table_name: rows}``. The runner builds the options,
creates ``results/<experiment>/<run-id>/``, writes every returned table as CSV
and Markdown, prints the tables, and writes ``manifest.json`` last (see
:mod:`experiments.report`).

An experiment with a ``Plan`` (a frozen dataclass of every decision of a run,
see :mod:`experiments.plan`) records it with ``ctx.record_plan(plan)``; the
manifest then holds it whole, and ``--rerun MANIFEST`` hands it back to
``run`` to redo the run from the manifest alone. Experiments without a plan
are redone from the recorded ``config``.

    python -m experiments.run --list
    python -m experiments.run datasets --help
    python -m experiments.run datasets --datasets fashion-mnist
    python -m experiments.run --rerun results/fv_vs_alexnet/<run-id>/manifest.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import sys
import time
import traceback
import types
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import plan as plans
from . import report
from .datasets import DatasetError, ImageSet

#: Experiment name -> module. Modules are imported only when needed.
EXPERIMENTS: dict[str, str] = {
    "datasets": "experiments.inventory",
    "fv_vs_alexnet": "experiments.fv_vs_alexnet",
}

RESULTS_DIR = Path("results")


@dataclass
class RunContext:
    """What an experiment gets besides its config: where to write, and hooks that
    feed the manifest."""

    experiment: str
    run_id: str
    out_dir: Path
    datasets: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    quiet: bool = False
    plan: dict | None = None  # the run's plan as recorded (record_plan)

    def record_plan(self, plan) -> None:
        """Record the run's resolved plan (a dataclass): the manifest holds it whole."""
        self.plan = plans.to_dict(plan)

    def record_dataset(self, data: ImageSet) -> None:
        """Note a data set split in the manifest (name, split, size, checksum, source)."""
        self.datasets.append({
            "name": data.name,
            "split": data.split,
            "n_images": len(data),
            "shape": list(data.images.shape[1:]),
            "n_classes": len(data.classes),
            "checksum_sha256": data.checksum(),
            "source": str(data.source),
        })

    @contextmanager
    def timer(self, stage: str):
        """``with ctx.timer("extract"): ...`` adds the stage's seconds to the manifest."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- options from a dataclass


def _unwrap_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        tp = _unwrap_optional(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs: dict = {"dest": f.name, "default": default,
                        "help": f"{f.metadata.get('help', '')} (default: {default})".strip()}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple):
            kwargs["nargs"] = "+"
            kwargs["type"] = typing.get_args(tp)[0]
        else:
            kwargs["type"] = tp
        parser.add_argument(flag, **kwargs)


def load_experiment(name: str) -> types.ModuleType:
    if name not in EXPERIMENTS:
        raise SystemExit(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)} (see --list)")
    return importlib.import_module(EXPERIMENTS[name])


# --------------------------------------------------------------------------- running


def run_experiment(name: str, config, *, out_root: str | Path = RESULTS_DIR, run_id: str | None = None,
                   quiet: bool = False, argv: list[str] | None = None,
                   rerun_of: str | None = None) -> tuple[Path, dict]:
    """Run experiment ``name`` with ``config`` (its ``Config``, or a recorded ``Plan``); return
    (run folder, tables).

    The manifest is written whether the experiment succeeds (status
    ``complete``) or fails (status ``failed`` with the error); a failure is
    re-raised.
    """
    module = load_experiment(name)
    run_id = run_id or report.new_run_id()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run_id):
        raise SystemExit(f"run id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    out_dir = Path(out_root) / name / run_id
    if out_dir.exists():
        raise SystemExit(f"{out_dir} already exists; choose another --run-id")
    out_dir.mkdir(parents=True)
    ctx = RunContext(experiment=name, run_id=run_id, out_dir=out_dir, quiet=quiet)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    is_config = isinstance(config, module.Config)
    manifest = {
        "experiment": name,
        "run_id": run_id,
        "status": "running",
        "command": argv,
        "config": dataclasses.asdict(config) if is_config else None,
        "rerun_of": rerun_of,
        "seed": getattr(config, "seed", None),
        "plan": None,
        "datasets": ctx.datasets,
        "packages": report.package_versions(),
        "git": report.git_commit(),
        "machine": report.machine_info(),
    }
    tables: dict = {}
    try:
        tables = module.run(config, ctx)
        for table, rows in tables.items():
            report.write_table(out_dir, table, rows)
        manifest["status"] = "complete"
        manifest["tables"] = [f"{t}.csv" for t in tables]
    except BaseException as exc:
        manifest["status"] = "failed"
        manifest["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        raise
    finally:
        manifest["plan"] = ctx.plan if ctx.plan is not None else manifest["config"]
        manifest["timings"] = {
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "total_seconds": round(time.perf_counter() - t0, 3),
            "stages_seconds": {k: round(v, 3) for k, v in ctx.timings.items()},
        }
        report.write_json(out_dir / "manifest.json", manifest)
    return out_dir, tables


# --------------------------------------------------------------------------- command line


def _list_text() -> str:
    lines = ["experiments:"]
    width = max(len(n) for n in EXPERIMENTS)
    for name in EXPERIMENTS:
        lines.append(f"  {name.ljust(width)}  {load_experiment(name).DESCRIPTION}")
    return "\n".join(lines)


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(RESULTS_DIR), help="results root (default: results)")
    parser.add_argument("--run-id", default=None, help="name of the run folder (default: UTC time + random)")
    parser.add_argument("--quiet", action="store_true", help="print only the output folder")


def recorded_run(manifest_path: str | Path) -> tuple[str, object]:
    """(experiment name, its ``Plan`` or ``Config``) as a manifest recorded them, for ``--rerun``.

    Raises ``SystemExit`` with the reason when the file is missing, is not a manifest, or holds a
    plan that does not fit the experiment's plan type (a manifest of another version)."""
    path = Path(manifest_path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--rerun {path}: cannot read a manifest there ({exc})") from exc
    if not isinstance(manifest, dict) or "experiment" not in manifest or manifest.get("plan") is None:
        raise SystemExit(f"--rerun {path}: not a run manifest with a recorded plan (see results/<experiment>/"
                         "<run-id>/manifest.json)")
    name = manifest["experiment"]
    module = load_experiment(name)
    try:
        return name, plans.from_dict(getattr(module, "Plan", module.Config), manifest["plan"])
    except plans.PlanError as exc:
        raise SystemExit(f"--rerun {path}: the recorded plan does not fit {name} as it is now: {exc}") from exc


def _parse(argv: list[str]):
    """(experiment name, config or plan, run options, rerun_of) from the command line."""
    if argv[0] == "--rerun":
        parser = argparse.ArgumentParser(prog="python -m experiments.run --rerun",
                                         description="Redo a run from its manifest.json alone.")
        parser.add_argument("manifest", help="results/<experiment>/<run-id>/manifest.json")
        _run_options(parser)
        args = vars(parser.parse_args(argv[1:]))
        name, config = recorded_run(args["manifest"])
        return name, config, args, args.pop("manifest")
    if argv[0].startswith("-"):
        raise SystemExit(f"unrecognised option {argv[0]}: the experiment's name comes first (or --rerun)")
    name = argv[0]
    module = load_experiment(name)
    parser = argparse.ArgumentParser(prog=f"python -m experiments.run {name}", description=module.DESCRIPTION)
    _add_config_arguments(parser, module.Config)
    _run_options(parser)
    args = vars(parser.parse_args(argv[1:]))
    options = {k: args.pop(k) for k in ("out", "run_id", "quiet")}
    return name, module.Config(**args), options, None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(
        prog="python -m experiments.run",
        description="Run an experiment; tables and manifest.json go to results/<experiment>/<run-id>/.",
        epilog="experiments: " + ", ".join(EXPERIMENTS) + ".  'python -m experiments.run NAME --help' "
               "shows an experiment's options; '--rerun MANIFEST' redoes a recorded run.",
    )
    top.add_argument("--list", action="store_true", help="list the experiments and exit")
    top.add_argument("--rerun", metavar="MANIFEST", help="redo the run recorded in MANIFEST (its manifest.json)")
    top.add_argument("name", nargs="?", help="experiment to run, followed by its options")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    if argv[0] == "--list":
        print(_list_text())
        return 0
    try:
        name, config, options, rerun_of = _parse(argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            top.error(exc.code)
        raise
    try:
        out_dir, tables = run_experiment(name, config, out_root=options["out"], run_id=options["run_id"],
                                         quiet=options["quiet"], argv=["python", "-m", "experiments.run", *argv],
                                         rerun_of=rerun_of)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not options["quiet"]:
        for table, rows in tables.items():
            print(f"\n## {table}\n")
            print(report.markdown_table(rows), end="")
        print()
    print(f"results written to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
