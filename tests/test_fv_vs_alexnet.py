"""The fv_vs_alexnet experiment, end to end on small learnable data written in the real formats."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from experiments import fv_vs_alexnet as exp
from experiments import protocol
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
    plan = manifest["plan"]  # every decision, spelt out: not just "preset smoke"
    assert plan["data"]["n_train"] == 600 and plan["fv"]["encoder"]["sizes"] == [4, 8]
    assert plan["fv"]["Cs"] == [1.0] and plan["fv"]["encoder"]["color"] == "gray"
    (cnn,) = plan["cnn"]
    assert cnn["model"] == "alexnet_small" and cnn["model_options"] == {"lrn": False}
    assert cnn["train"]["epochs"] == 1 and cnn["train"]["batch_size"] == 64
    assert cnn["train"]["precision"] in ("bf16", "fp32") and cnn["train"]["device"] == "cpu"

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


DETERMINISTIC = ("method", "seed", "n_train", "n_val", "n_test", "top1_accuracy", "top5_accuracy", "selected",
                 "val_top1", "feature_dim", "params", "mult_adds")


def test_a_run_is_redone_from_its_manifest_alone(tiny_fashion, tmp_path, capsys):
    first_dir, _ = run_experiment("fv_vs_alexnet", config(tiny_fashion, tmp_path, cache_dir=""),
                                  out_root=tmp_path / "r", quiet=True)
    code = main(["--rerun", str(first_dir / "manifest.json"), "--out", str(tmp_path / "r"), "--run-id", "again",
                 "--quiet"])
    assert code == 0
    second_dir = tmp_path / "r" / "fv_vs_alexnet" / "again"
    first, second = read_csv(first_dir / "results.csv"), read_csv(second_dir / "results.csv")
    assert [r["method"] for r in second] == ["fv", "fv_pyramid", "alexnet"]
    assert [{k: r[k] for k in DETERMINISTIC} for r in first] == [{k: r[k] for k in DETERMINISTIC} for r in second]
    manifest = json.loads((second_dir / "manifest.json").read_text())
    original = json.loads((first_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["rerun_of"] == str(first_dir / "manifest.json")
    assert manifest["plan"] == original["plan"] and manifest["config"] is None


def test_rerun_refuses_what_is_not_a_manifest(tmp_path, capsys):
    (tmp_path / "m.json").write_text(json.dumps({"experiment": "fv_vs_alexnet", "plan": {"preset": "smoke"}}))
    with pytest.raises(SystemExit):
        main(["--rerun", str(tmp_path / "m.json")])
    assert "does not fit fv_vs_alexnet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--rerun", str(tmp_path / "missing.json")])
    assert "cannot read a manifest" in capsys.readouterr().err


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
    # how many workers compute the features does not change them: the entry is reused
    _, third = run_experiment("fv_vs_alexnet", config(tiny_fashion, tmp_path, methods=["fv"], jobs=2),
                              out_root=tmp_path / "r", quiet=True)
    assert third["results"][0]["features_cached"] is True
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
    (dict(model="lenet"), "unknown model"),
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
        assert protocol.topk_accuracy(scores, labels, k) == pytest.approx(expected)


def test_presets_are_typed_and_checked_when_built():
    from cnn.train import TrainConfig

    assert set(exp.PRESETS) == {"smoke", "quick", "full"}
    assert exp.PRESETS["full"].n_train is None and exp.PRESETS["full"].n_test is None
    assert exp.Config().preset == "quick" and exp.Config().dataset == "fashion-mnist"
    for preset in exp.PRESETS.values():
        assert isinstance(preset.cnn, TrainConfig)
        assert preset.fv_small["scale"] == 2.0 and preset.fv_large["scale"] == 1.0
    assert exp.PRESETS["quick"].cnn.epochs == 6 and exp.PRESETS["quick"].cnn.lr == exp.CNN_RECIPE.lr
    # a misspelt setting fails where the settings are written, not in the middle of a run
    with pytest.raises(TypeError, match="n_component"):
        exp.encoder_params(n_component=8)
    with pytest.raises(TypeError, match="epoch"):
        exp._preset(10, 10, Cs=(1.0,), epoch=3)


def _split(shape, n_classes=2, name="x"):
    images = np.zeros((4, *shape), np.uint8)
    labels = np.arange(4) % n_classes
    return exp.Split(name, tuple("ab"[:n_classes]), (images, labels), (images, labels), (images, labels), {})


def test_plan_for_large_rgb_images():
    plan = exp.resolve(exp.Config(device="cpu", preset="full"), _split((96, 96, 3)))
    assert plan.fv.encoder["color"] == "opponent" and plan.fv.encoder["scale"] == 1.0
    assert plan.fv.encoder["n_fit_images"] == 4  # capped at the fit images
    (cnn,) = plan.cnn
    assert (cnn.method, cnn.model, cnn.train.input_size) == ("alexnet", "alexnet", 224)
    assert cnn.train.precision in ("bf16", "fp32") and cnn.train.device == "cpu" and cnn.train.flip


def test_plan_round_trips_through_json():
    import json as json_module

    from experiments import plan as plans

    plan = exp.resolve(exp.Config(device="cpu", preset="smoke", reference=True, dataset="mnist"),
                        _split((28, 28), name="mnist"))
    assert [c.model for c in plan.cnn] == ["alexnet_small", "alexnet"]
    assert not plan.cnn[0].train.flip  # digits: no flip
    data = json_module.loads(json_module.dumps(plans.to_dict(plan)))
    assert plans.from_dict(exp.Plan, data) == plan
    data["fv"]["svm_tol"] = "small"
    with pytest.raises(plans.PlanError, match="fv.svm_tol"):
        plans.from_dict(exp.Plan, data)


def test_model_option_trains_any_registered_model_that_fits(tiny_fashion, tmp_path):
    out, tables = run_experiment("fv_vs_alexnet", config(tiny_fashion, tmp_path, methods=["cnn"], model="mobilenet_v2"),
                                 out_root=tmp_path / "r", quiet=True)
    (row,) = tables["results"]
    assert row["method"] == "mobilenet_v2" and row["model"] == "mobilenet_v2"
    assert row["params"] == 2_236_106  # cnn.complexity of MobileNet v2, 1 input channel, 10 classes
    assert (out / "mobilenet_v2-seed0.jsonl").exists()


def test_model_option_names_models_that_do_not_fit(tiny_fashion, tmp_path):
    with pytest.raises(ValueError, match="'inception_v3' does not accept 1-channel 28 x 28 images"):
        run_experiment("fv_vs_alexnet", config(tiny_fashion, tmp_path, methods=["cnn"], model="inception_v3"),
                       out_root=tmp_path / "r", quiet=True)
    with pytest.raises(ValueError, match="--lrn applies to alexnet only"):
        exp.check_config(exp.Config(model="mobilenet_v2", lrn=True))
