"""The real Fashion-MNIST files (Debian's dataset-fashion-mnist, or data/fashion-mnist).

Skipped where the data set is not installed; `.ci/run` installs it where apt-get exists.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from experiments import datasets as ds
from experiments import run as runner

try:
    TRAIN_DIR = ds.find("fashion-mnist", "train")
except ds.DatasetNotFoundError:
    TRAIN_DIR = None

pytestmark = pytest.mark.skipif(TRAIN_DIR is None, reason="Fashion-MNIST not installed "
                                "(apt-get install dataset-fashion-mnist, or python -m experiments.fetch fashion-mnist)")


@pytest.fixture(scope="module")
def train():
    return ds.load("fashion-mnist", "train")


def test_official_sizes(train):
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and train.labels.min() == 0 and train.labels.max() == 9
    np.testing.assert_array_equal(train.class_counts(), np.full(10, 6000))
    test = ds.load("fashion-mnist", "test")
    assert test.images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(test.class_counts(), np.full(10, 1000))
    assert train.classes == ds.FASHION_MNIST_CLASSES


def test_agrees_with_torchvision_reader(train, tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    files = ds._mnist_files(TRAIN_DIR, "train")
    plain = []
    for path in files:
        data = path.read_bytes()
        out = tmp_path / path.name.removesuffix(".gz")
        out.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        plain.append(out)
    np.testing.assert_array_equal(train.images, read_image_file(str(plain[0])).numpy())
    np.testing.assert_array_equal(train.labels, read_label_file(str(plain[1])).numpy())


def test_file_order_is_kept(train):
    # The first training labels of the official files: 9 (ankle boot), 0, 0, 3, 0, 2, 7, 2, 5, 5.
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


def test_datasets_experiment_reports_the_official_table(tmp_path, capsys):
    assert runner.main(["datasets", "--datasets", "fashion-mnist", "--out", str(tmp_path), "--run-id", "fm"]) == 0
    printed = capsys.readouterr().out
    assert "| train |  60000 |     28 |    28 |        1 |      10 |          6000 |          6000 |" in printed
    assert "| test  |  10000 |     28 |    28 |        1 |      10 |          1000 |          1000 |" in printed
