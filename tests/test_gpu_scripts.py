"""The GPU measurement scripts run end to end (on the CPU, at small sizes), so that time on a GPU
is not spent on a broken script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "figures.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *args, "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_gpu_fv_script_runs_on_the_cpu(tmp_path):
    figures = run_script(["benchmarks/gpu_fv.py", "--device", "cpu", "--repeats", "1", "--dsift-batch", "2",
                          "--gmm-rows", "4000", "--fv-batch", "4", "--fit-images", "300", "--encode-images", "40",
                          "--jobs", "1"], tmp_path)
    for key in ("dsift_images_per_s", "gmm_x64_K64_20it_s", "fv_K256_images_per_s", "fv_K64_images_per_s",
                "encoder_images_per_s", "encoder_cpu_workers_images_per_s"):
        assert figures[key] > 0, key
    assert figures["gmm_rows"] == 4000
    assert figures["encoder_max_unpowered_difference"] < 1e-4


@pytest.mark.slow
def test_gpu_train_script_runs_on_the_cpu(tmp_path):
    from experiments import datasets

    try:
        datasets.find("fashion-mnist", "train")
    except datasets.DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (make data)")
    figures = run_script(["benchmarks/gpu_train.py", "--device", "cpu", "--n-train", "500", "--recipes", "small",
                          "--small-epochs", "1"], tmp_path)
    assert 0 <= figures["recipes"]["small"]["test_top1"] <= 1
