"""The fv_vs_alexnet experiment, end to end on small learnable data written in the real formats."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from experiments import fv_vs_alexnet as exp
from experiments.run import main, run_experiment
from tests.formats import write_idx


def gratings(rng, n: int, n_classes: int = 10, size: int = 28, rgb: bool = False):
    """Class c: a sine grating at orientation 18 c degrees, random phase and frequency, plus noise."""
    labels = (np.arange(n) % n_classes).astype(np.int64)
    rng.shuffle(labels)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    angle = np.pi * labels / n_classes
    freq = rng.uniform(0.5, 0.8, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    wave = np.sin(freq[:, None, None] * (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
                  + phase[:, None, None])
    images = 127.5 + 90 * wave + rng.normal(0, 20, (n, size, size))
    images = np.clip(images, 0, 255).astype(np.uint8)
    if rgb:
        images = np.stack([images, images[:, ::-1], 255 - images], axis=-1)
    return images, labels


@pytest.fixture
def tiny_fashion(isolated_data, tmp_path):
    """A Fashion-MNIST-format folder (gzipped IDX) of 10-class gratings: 700 train, 200 test."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fm"
    for prefix, n in (("train", 700), ("t10k", 200)):
        images, labels = gratings(rng, n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8), gz=True)
    return folder


def config(data_dir, tmp_path, **overrides):
    values = dict(dataset="fashion-mnist", data_dir=str(data_dir), preset="smoke", device="cpu", jobs=1,
                  cache_dir=str(tmp_path / "cache"))
    values.update(overrides)
    return exp.Config(**values)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- end to end


def test_smoke_run_writes_every_table_and_the_plot(tiny_fashion, tmp_path):
    out, tables = run_experiment("fv_vs_alexnet", config(tiny_fashion, tmp_path), out_root=tmp_path / "results",
                                 quiet=True)
    for name in ("results", "summary", "validation", "published"):
        assert (out / f"{name}.csv").exists() and (out / f"{name}.md").exists()
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [d["split"] for d in manifest["datasets"]] == ["train", "test"]

    rows = read_csv(out / "results.csv")
    assert [r["method"] for r in rows] == ["fv", "fv_pyramid", "alexnet"]
    for r in rows:
        # smoke: 600 of the 700 training images, 10% of them held out; 300 of the 200 test -> all 200
        assert (int(r["n_train"]), int(r["n_val"]), int(r["n_test"])) == (540, 60, 200)
        top1, top5 = float(r["top1_accuracy"]), float(r["top5_accuracy"])
        assert 0.0 <= top1 <= top5 <= 1.0
        assert float(r["top1_error"]) == pytest.approx(1 - top1, abs=1e-5)
        assert float(r["top5_error"]) == pytest.approx(1 - top5, abs=1e-5)
        assert float(r["train_seconds"]) > 0 and float(r["inference_ms_per_image"]) > 0
        assert int(r["params"]) > 0 and int(r["mult_adds"]) > 0 and float(r["peak_memory_gib"]) > 0
        assert r["device"] == "cpu" and r["seed"] == "0"
    fv, pyramid, alexnet = rows
    # gratings are easy for orientation histograms: the FV branch must learn them
    assert float(fv["top1_accuracy"]) > 0.8 and float(pyramid["top1_accuracy"]) > 0.8
    assert int(pyramid["feature_dim"]) == 5 * int(fv["feature_dim"])  # 1x1 + 2x2 regions
    assert fv["selected"] == "C=1" and alexnet["selected"].startswith("epoch=")
    assert int(alexnet["params"]) == 7_703_370 - (3 - 1) * 64 * 9  # alexnet_small, 1 input channel
    # the CNN logged one JSON line per epoch into the run folder
    lines = (out / "alexnet-seed0.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1

    summary = read_csv(out / "summary.csv")
    assert [s["method"] for s in summary] == ["fv", "fv_pyramid", "alexnet"]
    assert float(summary[0]["top1_accuracy_mean"]) == float(fv["top1_accuracy"])
    published = {r["method"]: r for r in read_csv(out / "published.csv")}
    assert published["SIFT + FVs (runner-up, team ISI)"]["top5_error"] == "0.262"
    assert published["AlexNet, 7 CNNs (winner, SuperVision)"]["top5_error"] == "0.153"


def test_features_are_cached_and_reused(tiny_fashion, tmp_path):
    cfg = config(tiny_fashion, tmp_path, methods=["fv"])
    _, first = run_experiment("fv_vs_alexnet", cfg, out_root=tmp_path / "r", quiet=True)
    folders = list((tmp_path / "cache" / "fv").iterdir())
    assert len(folders) == 1
    files = sorted(p.name.split("-")[0] for p in folders[0].glob("*.npy"))
    assert files == ["fit", "test", "val"]
    assert not list(folders[0].glob(".*"))  # no temporary file left behind
    _, second = run_experiment("fv_vs_alexnet", cfg, out_root=tmp_path / "r", quiet=True)
    a, b = first["results"][0], second["results"][0]
    assert (a["features_cached"], b["features_cached"]) == (False, True)
    assert a["top1_accuracy"] == b["top1_accuracy"] and a["train_seconds"] > 0
    # another FV configuration or another seed gets its own entry
    run_experiment("fv_vs_alexnet", config(tiny_fashion, tmp_path, methods=["fv"], seeds=2),
                   out_root=tmp_path / "r", quiet=True)
    assert len(list((tmp_path / "cache" / "fv").iterdir())) == 2


def test_seeds_give_one_row_each_and_a_spread(tiny_fashion, tmp_path):
    _, tables = run_experiment("fv_vs_alexnet", config(tiny_fashion, tmp_path, methods=["fv"], seeds=2),
                               out_root=tmp_path / "r", quiet=True)
    assert [r["seed"] for r in tables["results"]] == [0, 1]
    (summary,) = tables["summary"]
    values = [r["top1_accuracy"] for r in tables["results"]]
    assert summary["seeds"] == 2
    assert summary["top1_accuracy_mean"] == pytest.approx(np.mean(values), abs=1e-5)
    assert summary["top1_accuracy_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-5)


def test_rgb_image_folder_runs_both_branches(isolated_data, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    root = tmp_path / "photos"
    images, labels = gratings(rng, 120, n_classes=3, size=32, rgb=True)
    for i, (im, c) in enumerate(zip(images, labels)):
        split = "test" if i % 4 == 0 else "train"
        (root / split / f"class{c}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(root / split / f"class{c}" / f"{i}.png")
    cfg = config(root, tmp_path, dataset="imagefolder", image_size=32)
    _, tables = run_experiment("fv_vs_alexnet", cfg, out_root=tmp_path / "r", quiet=True)
    rows = tables["results"]
    assert [r["method"] for r in rows] == ["fv", "fv_pyramid", "alexnet"]
    assert rows[0]["n_test"] == 30 and rows[0]["n_train"] + rows[0]["n_val"] == 90
    # opponent-colour SIFT: three 128-d descriptors per point before PCA
    assert rows[2]["params"] == 7_703_370 - 10 * 1025 + 3 * 1025  # alexnet_small, 3 classes


def test_image_folder_needs_a_size(isolated_data, tmp_path):
    (tmp_path / "photos" / "a").mkdir(parents=True)
    with pytest.raises(Exception, match="--image-size"):
        run_experiment("fv_vs_alexnet", config(tmp_path / "photos", tmp_path, dataset="imagefolder"),
                       out_root=tmp_path / "r", quiet=True)


@pytest.mark.parametrize("overrides, message", [
    (dict(methods=["svm"]), "unknown methods"),
    (dict(methods=[]), "no method"),
    (dict(seeds=0), "--seeds"),
    (dict(n_train=0), "--n-train"),
    (dict(jobs=0), "--jobs 0"),
    (dict(preset="huge"), "unknown preset"),
    (dict(fv_color="opponent", methods=["fv"]), "needs RGB"),
])
def test_bad_settings_are_named(tiny_fashion, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run_experiment("fv_vs_alexnet", config(tiny_fashion, tmp_path, **overrides), out_root=tmp_path / "r",
                       quiet=True)


def test_command_line(tiny_fashion, tmp_path, capsys):
    code = main(["fv_vs_alexnet", "--preset", "smoke", "--data-dir", str(tiny_fashion), "--methods", "fv",
                 "--device", "cpu", "--jobs", "1", "--cache-dir", "", "--out", str(tmp_path / "r"),
                 "--run-id", "cli"])
    assert code == 0
    assert (tmp_path / "r" / "fv_vs_alexnet" / "cli" / "results.csv").exists()
    assert "| fv " in capsys.readouterr().out
    assert not (tmp_path / "cache").exists()


def test_missing_data_set_says_how_to_get_it(isolated_data, tmp_path, capsys):
    code = main(["fv_vs_alexnet", "--preset", "smoke", "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert "Fashion-MNIST (train split) not found" in err and "apt-get install dataset-fashion-mnist" in err


# --------------------------------------------------------------------------- pieces


def test_topk_accuracy_against_a_loop():
    rng = np.random.default_rng(3)
    scores, labels = rng.normal(size=(200, 7)), rng.integers(0, 7, 200)
    for k in (1, 3, 5, 9):
        expected = np.mean([labels[i] in np.argsort(-scores[i])[:min(k, 7)] for i in range(200)])
        assert exp.topk_accuracy(scores, labels, k) == pytest.approx(expected)


def test_whole_image_slice_is_the_unpyramided_fisher_vector():
    from fv.encoder import FisherVectorEncoder

    rng = np.random.default_rng(4)
    images, _ = gratings(rng, 40)
    params = dict(scale=2.0, sizes=(4, 8), step=4, pca_components=8, n_components=4, n_fit_descriptors=5000,
                  n_fit_images=40, gmm_max_iter=10, random_state=0)
    pyramid = FisherVectorEncoder(pyramid=((1, 1), (2, 2)), **params).fit(images)
    whole = FisherVectorEncoder(pyramid=None, **params).fit(images)
    F_pyr, F_whole = pyramid.transform(images), whole.transform(images)
    np.testing.assert_allclose(exp._whole_image(F_pyr, F_whole.shape[1]), F_whole, atol=1e-6)


def test_fv_mult_adds_by_hand():
    # N=10 descriptors of 128 dims -> D=4, K=2, one level, 3 classes, FV dim 16, 100 pixels, bin size 6
    sift = (2 * (2 * 4 + 1) + 12 + 16 * 6) * 100 + 512 * 10
    expected = sift + 10 * 128 * 4 + 2 * 10 * 2 * 4 + 2 * 10 * 2 * 4 + 3 * 16
    assert exp.fv_mult_adds(10, 128, 4, 2, 1, 3, 16, 100, (6,)) == expected


def test_presets_and_settings():
    assert set(exp.PRESETS) == {"smoke", "quick", "full"}
    assert exp.PRESETS["full"].n_train is None and exp.PRESETS["full"].n_test is None
    assert exp.Config().preset == "quick" and exp.Config().dataset == "fashion-mnist"
    split = exp.Split("x", ("a", "b"), (np.zeros((4, 96, 96, 3), np.uint8), np.zeros(4)), None, None, {})
    settings = exp.fv_settings(split, exp.PRESETS["full"], "auto")
    assert settings["color"] == "opponent" and settings["scale"] == 1.0  # large RGB images
    assert exp.cnn_setup(split) == ("alexnet", 224)
