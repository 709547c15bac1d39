"""The experiment runner, the result files and the manifest."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import formats
from experiments import datasets as ds
from experiments import report
from experiments import run as runner

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("isolated_data")


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_datasets_experiment_end_to_end(tmp_path, capsys):
    written = formats.write_mnist(tmp_path / "mnist", np.random.default_rng(0), n_train=40, n_test=20)
    code = runner.main(["datasets", "--datasets", "mnist", "cifar10", "--data-dir", str(tmp_path / "mnist"),
                        "--out", str(tmp_path / "results"), "--run-id", "r1"])
    assert code == 0
    out_dir = tmp_path / "results" / "datasets" / "r1"
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "manifest.json", "mnist-classes.csv", "mnist-classes.md", "mnist-splits.csv", "mnist-splits.md",
        "summary.csv", "summary.md",
    ]
    splits = {r["split"]: r for r in _read_csv(out_dir / "mnist-splits.csv")}
    assert splits["train"]["images"] == "40" and splits["test"]["images"] == "20"
    assert (splits["train"]["height"], splits["train"]["width"], splits["train"]["channels"]) == ("28", "28", "1")
    assert splits["train"]["sha256"] == ds.array_checksum(*written["train"])
    classes = _read_csv(out_dir / "mnist-classes.csv")
    assert [int(r["train"]) for r in classes] == np.bincount(written["train"][1], minlength=10).tolist()
    assert all(int(r["train_fit"]) + int(r["train_val"]) == int(r["train"]) for r in classes)
    summary = {r["dataset"]: r for r in _read_csv(out_dir / "summary.csv")}
    assert summary["mnist"]["status"] == "found" and summary["cifar10"]["status"] == "not found"
    assert "experiments.fetch cifar10" in summary["cifar10"]["how_to_get"]

    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["experiment"] == "datasets"
    assert manifest["config"]["datasets"] == ["mnist", "cifar10"] and manifest["seed"] == 0
    assert {(d["name"], d["split"], d["checksum_sha256"]) for d in manifest["datasets"]} == {
        ("mnist", "train", ds.array_checksum(*written["train"])),
        ("mnist", "test", ds.array_checksum(*written["test"])),
    }
    for key in ("packages", "git", "machine", "timings", "command"):
        assert key in manifest
    assert manifest["packages"]["numpy"] == np.__version__
    assert manifest["machine"]["cpu_count"] == os.cpu_count()
    assert manifest["timings"]["total_seconds"] >= 0
    assert "load mnist train" in manifest["timings"]["stages_seconds"]
    printed = capsys.readouterr().out
    assert "## mnist-splits" in printed and str(out_dir) in printed


def test_failed_run_leaves_a_failed_manifest_and_a_clear_error(tmp_path, capsys):
    formats.write_mnist(tmp_path / "mnist", np.random.default_rng(0), gz=False)
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").write_bytes(
        formats.idx_bytes(np.zeros((12, 28, 28), np.uint8))[:100])
    code = runner.main(["datasets", "--datasets", "mnist", "--data-dir", str(tmp_path / "mnist"),
                        "--out", str(tmp_path / "results"), "--run-id", "bad"])
    assert code == 2
    assert "t10k-images-idx3-ubyte" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "results" / "datasets" / "bad" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "truncated" in manifest["error"]
    assert not list((tmp_path / "results" / "datasets" / "bad").glob("*.csv"))


def test_run_id_is_checked_and_never_overwritten(tmp_path):
    args = ["datasets", "--datasets", "mnist", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="letters, digits"):
        runner.main([*args, "--run-id", "../escape"])
    (tmp_path / "datasets" / "taken").mkdir(parents=True)
    with pytest.raises(SystemExit, match="already exists"):
        runner.main([*args, "--run-id", "taken"])


def test_list_and_help(capsys):
    assert runner.main(["--list"]) == 0
    assert "datasets" in capsys.readouterr().out
    assert runner.main(["--help"]) == 0
    assert "experiments: datasets" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        runner.main(["datasets", "--help"])
    assert exc.value.code == 0
    assert "--validation-fraction" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        runner.main(["nope"])
    assert exc.value.code == 2  # a usage error, with the known names
    assert "unknown experiment 'nope'; known: datasets, fv_vs_alexnet" in capsys.readouterr().err


def test_module_entry_points_run_as_commands():
    for module in ("experiments.run", "experiments.fetch"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "usage" in result.stdout.lower()


# --------------------------------------------------------------------------- report


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    report.atomic_write(target, "old\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        report.atomic_write(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary file left


def test_tables_round_trip_and_markdown_alignment(tmp_path):
    rows = [{"method": "fv", "top1": 0.9012345678, "n": 3}, {"method": "alexnet", "top1": 0.93, "n": 10,
                                                          "note": "a|b"}]
    csv_path, md_path = report.write_table(tmp_path, "results", rows)
    back = _read_csv(csv_path)
    assert back == [{"method": "fv", "top1": "0.901235", "n": "3", "note": ""},
                    {"method": "alexnet", "top1": "0.93", "n": "10", "note": "a|b"}]
    md = md_path.read_text().splitlines()
    assert md[0].startswith("| method ") and md[1].startswith("| ------")
    assert md[1].split("|")[2].strip().endswith(":")  # numeric column right-aligned
    assert "a\\|b" in md[3]
    with pytest.raises(ValueError, match="no rows"):
        report.write_table(tmp_path, "empty", [])


def test_run_ids_are_unique_and_sortable():
    ids = {report.new_run_id() for _ in range(50)}
    assert len(ids) > 45
    assert all(len(i.split("-")) == 3 for i in ids)
