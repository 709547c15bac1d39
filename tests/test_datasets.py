"""The data-set layer: every format, the search order, the splits, the errors."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil

import numpy as np
import pytest

import formats
from experiments import datasets as ds


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


pytestmark = pytest.mark.usefixtures("isolated_data")


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_mnist_family_reads_idx_files(tmp_path, rng, name, gz):
    written = formats.write_mnist(tmp_path / "d", rng, gz=gz)
    for split in ("train", "test"):
        data = ds.load(name, split, data_dir=tmp_path / "d")
        images, labels = written[split]
        assert data.images.dtype == np.uint8 and data.images.shape == images.shape
        assert data.labels.dtype == np.int64
        np.testing.assert_array_equal(data.images, images)
        np.testing.assert_array_equal(data.labels, labels)
        assert len(data.classes) == 10 and data.split == split
    assert ds.load("fashion-mnist", "train", data_dir=tmp_path / "d").classes[0] == "T-shirt/top"


def test_idx_reader_agrees_with_torchvision(tmp_path, rng):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    written = formats.write_mnist(tmp_path, rng, gz=False)
    ours = ds.load("mnist", "train", data_dir=tmp_path)
    np.testing.assert_array_equal(ours.images, read_image_file(str(tmp_path / "train-images-idx3-ubyte")).numpy())
    np.testing.assert_array_equal(ours.labels, read_label_file(str(tmp_path / "train-labels-idx1-ubyte")).numpy())
    np.testing.assert_array_equal(ours.images, written["train"][0])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_every_type_code(tmp_path, rng, dtype):
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = formats.write_idx(tmp_path / "x.idx", array)
    out = ds.read_idx(path)
    np.testing.assert_array_equal(out, array)
    assert out.dtype.isnative


def test_torchvision_download_layout_is_found(tmp_path, rng):
    formats.write_mnist(tmp_path / "root" / "FashionMNIST" / "raw", rng)
    data = ds.load("fashion-mnist", "test", data_dir=tmp_path / "root")
    assert data.source == tmp_path / "root" / "FashionMNIST" / "raw"


# --------------------------------------------------------------------------- CIFAR


def _patch_torchvision_integrity(monkeypatch, module, cls):
    monkeypatch.setattr(cls, "_check_integrity", lambda self: True)
    if hasattr(module, "check_integrity"):
        monkeypatch.setattr(module, "check_integrity", lambda *a, **k: True)


def test_cifar10_matches_torchvision(tmp_path, rng, monkeypatch):
    import torchvision.datasets.cifar as tvc

    written = formats.write_cifar10(tmp_path, rng)
    _patch_torchvision_integrity(monkeypatch, tvc, tvc.CIFAR10)
    for split, train in (("train", True), ("test", False)):
        ours = ds.load("cifar10", split, data_dir=tmp_path)
        theirs = tvc.CIFAR10(str(tmp_path), train=train, download=False)
        assert ours.images.shape == theirs.data.shape and ours.images.flags.c_contiguous
        np.testing.assert_array_equal(ours.images, theirs.data)
        np.testing.assert_array_equal(ours.labels, theirs.targets)
        np.testing.assert_array_equal(ours.images, written[split][0])
        assert ours.classes == tuple(theirs.classes) == written["classes"]


def test_cifar10_pickled_by_python3_with_bytes_keys(tmp_path, rng):
    written = formats.write_cifar10(tmp_path, rng, py3_bytes_keys=True)
    data = ds.load("cifar10", "train", data_dir=tmp_path)
    np.testing.assert_array_equal(data.images, written["train"][0])
    np.testing.assert_array_equal(data.labels, written["train"][1])
    assert data.classes == written["classes"]


@pytest.mark.parametrize("label_type", ["fine", "coarse"])
def test_cifar100_fine_and_coarse(tmp_path, rng, label_type):
    written = formats.write_cifar100(tmp_path, rng)
    data = ds.load("cifar100", "test", data_dir=tmp_path, label_type=label_type)
    images, fine, coarse = written["test"]
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, fine if label_type == "fine" else coarse)
    assert data.classes == written[label_type]


def test_cifar100_matches_torchvision(tmp_path, rng, monkeypatch):
    import torchvision.datasets.cifar as tvc

    formats.write_cifar100(tmp_path, rng)
    _patch_torchvision_integrity(monkeypatch, tvc, tvc.CIFAR100)
    ours = ds.load("cifar100", "train", data_dir=tmp_path)
    theirs = tvc.CIFAR100(str(tmp_path), train=True)
    np.testing.assert_array_equal(ours.images, theirs.data)
    np.testing.assert_array_equal(ours.labels, theirs.targets)


def test_malicious_pickle_is_refused_without_running_code(tmp_path, rng):
    formats.write_cifar10(tmp_path, rng)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f, protocol=2)
    with pytest.raises(ds.CorruptDataError, match=r"data_batch_3.*refusing to load global (posix|os)\.system"):
        ds.load("cifar10", "train", data_dir=tmp_path)
    assert not marker.exists()


def test_truncated_cifar_batch(tmp_path, rng):
    formats.write_cifar10(tmp_path, rng)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ds.CorruptDataError, match=r"test_batch.*truncated or damaged"):
        ds.load("cifar10", "test", data_dir=tmp_path)


def test_cifar_wrong_data_shape(tmp_path, rng):
    formats.write_cifar10(tmp_path, rng)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(formats.py2_pickle({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(ds.CorruptDataError, match=r"test_batch.*\(N, 3072\)"):
        ds.load("cifar10", "test", data_dir=tmp_path)


# --------------------------------------------------------------------------- SVHN, STL-10


def test_svhn_matches_torchvision(tmp_path, rng, monkeypatch):
    import torchvision.datasets.svhn as tvs

    written = formats.write_svhn(tmp_path, rng)
    monkeypatch.setattr(tvs.SVHN, "_check_integrity", lambda self: True)
    for split in ("train", "test"):
        ours = ds.load("svhn", split, data_dir=tmp_path)
        theirs = tvs.SVHN(str(tmp_path), split=split)
        np.testing.assert_array_equal(ours.images.transpose(0, 3, 1, 2), theirs.data)
        np.testing.assert_array_equal(ours.labels, theirs.labels)
        np.testing.assert_array_equal(ours.images, written[split][0])
        np.testing.assert_array_equal(ours.labels, written[split][1])
    assert 0 in ours.labels and 10 not in ours.labels


def test_stl10_matches_torchvision(tmp_path, rng, monkeypatch):
    import torchvision.datasets.stl10 as tvs

    written = formats.write_stl10(tmp_path, rng)
    monkeypatch.setattr(tvs.STL10, "_check_integrity", lambda self: True)
    for split in ("train", "test"):
        ours = ds.load("stl10", split, data_dir=tmp_path)
        theirs = tvs.STL10(str(tmp_path), split=split)
        np.testing.assert_array_equal(ours.images.transpose(0, 3, 1, 2), theirs.data)
        np.testing.assert_array_equal(ours.labels, theirs.labels)
        np.testing.assert_array_equal(ours.images, written[split][0])
        assert ours.classes == written["classes"]
    unlabeled = ds.load("stl10", "unlabeled", data_dir=tmp_path)
    np.testing.assert_array_equal(unlabeled.images, written["unlabeled"][0])
    assert (unlabeled.labels == -1).all()


def test_stl10_truncated_images(tmp_path, rng):
    formats.write_stl10(tmp_path, rng)
    path = tmp_path / "stl10_binary" / "train_X.bin"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ds.CorruptDataError, match=r"train_X\.bin.*truncated"):
        ds.load("stl10", "train", data_dir=tmp_path)


def test_svhn_damaged_mat_file(tmp_path, rng):
    formats.write_svhn(tmp_path, rng)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, this is not one" + bytes(40))
    with pytest.raises(ds.CorruptDataError, match=r"test_32x32\.mat"):
        ds.load("svhn", "test", data_dir=tmp_path)


# --------------------------------------------------------------------------- image folders


def test_imagefolder_with_split_folders_matches_torchvision(tmp_path, rng):
    from torchvision.datasets import ImageFolder as TVImageFolder

    formats.write_image_tree(tmp_path / "train", rng, per_class=4)
    formats.write_image_tree(tmp_path / "test", rng, per_class=2)
    for split in ("train", "test"):
        ours = ds.load("imagefolder", split, data_dir=tmp_path)
        theirs = TVImageFolder(str(tmp_path / split))
        assert ours.classes == tuple(theirs.classes)
        np.testing.assert_array_equal(ours.labels, theirs.targets)
        for i in range(len(theirs)):
            np.testing.assert_array_equal(ours.images[i], np.asarray(theirs[i][0]))
    assert ours.images.shape == (6, 20, 24, 3)


def test_imagefolder_classes_agree_across_splits(tmp_path, rng):
    formats.write_image_tree(tmp_path / "train", rng, classes=("a", "b", "c"), per_class=2)
    formats.write_image_tree(tmp_path / "test", rng, classes=("a", "c"), per_class=2)
    test = ds.load("imagefolder", "test", data_dir=tmp_path)
    assert test.classes == ("a", "b", "c")
    assert sorted(set(test.labels.tolist())) == [0, 2]


def test_imagefolder_without_split_folders_is_carved_deterministically(tmp_path, rng):
    written = formats.write_image_tree(tmp_path, rng, classes=("a", "b"), per_class=10)
    train = ds.load("imagefolder", "train", data_dir=tmp_path, test_fraction=0.3, seed=5)
    test = ds.load("imagefolder", "test", data_dir=tmp_path, test_fraction=0.3, seed=5)
    assert np.bincount(test.labels).tolist() == [3, 3]
    assert np.bincount(train.labels).tolist() == [7, 7]
    again = ds.load("imagefolder", "test", data_dir=tmp_path, test_fraction=0.3, seed=5)
    np.testing.assert_array_equal(again.images, test.images)
    other = ds.load("imagefolder", "test", data_dir=tmp_path, test_fraction=0.3, seed=6)
    assert not np.array_equal(other.images, test.images)
    # Disjoint and complete: every written image is in exactly one split.
    seen = [img.tobytes() for img in np.concatenate([train.images, test.images])]
    assert sorted(seen) == sorted(a.tobytes() for a in written.values())


def test_imagefolder_gray_jpeg_and_resize(tmp_path, rng):
    formats.write_image_tree(tmp_path, rng, classes=("x",), per_class=3, size=(30, 50), ext=".jpg", mode="L")
    gray = ds.load("imagefolder", "train", data_dir=tmp_path, color="gray", test_fraction=0.34)
    assert gray.images.shape == (2, 30, 50) and gray.channels == 1
    rgb = ds.load("imagefolder", "train", data_dir=tmp_path, size=(16, 16), test_fraction=0.34)
    assert rgb.images.shape == (2, 16, 16, 3)


def test_lazy_reader_reads_one_at_a_time(tmp_path, rng):
    written = formats.write_image_tree(tmp_path / "train", rng, classes=("a", "b"), per_class=3)
    folder = ds.ImageFolder(tmp_path, "train", transform=lambda im: im[:4, :4])
    assert len(folder) == 6 and folder.classes == ("a", "b")
    image, label = folder[4]
    assert label == 1
    np.testing.assert_array_equal(image, written[folder.paths[4]][:4, :4])
    assert folder.checksum() == ds.ImageFolder(tmp_path, "train").checksum()


def test_empty_class_folder_is_an_error(tmp_path, rng):
    formats.write_image_tree(tmp_path, rng, classes=("a",), per_class=3)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ds.CorruptDataError, match=r"empty: class folder holds no images"):
        ds.load("imagefolder", "train", data_dir=tmp_path)


def test_unreadable_image_raises_or_is_skipped_and_counted(tmp_path, rng):
    formats.write_image_tree(tmp_path / "train", rng, classes=("a", "b"), per_class=3)
    bad = tmp_path / "train" / "b" / "001.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    with pytest.raises(ds.CorruptDataError, match=r"001\.png: unreadable image.*on_error='skip'"):
        ds.load("imagefolder", "train", data_dir=tmp_path)
    data = ds.load("imagefolder", "train", data_dir=tmp_path, on_error="skip")
    assert len(data) == 5 and len(data.skipped) == 1 and data.skipped[0][0] == str(bad)
    assert np.bincount(data.labels).tolist() == [3, 2]
    folder = ds.ImageFolder(tmp_path, "train")
    assert [p for p, _ in folder.verify()] == [str(bad)] and len(folder) == 5


def test_mixed_sizes_need_a_size(tmp_path, rng):
    formats.write_image_tree(tmp_path / "train", rng, classes=("a",), per_class=2, size=(10, 10))
    formats.write_image_tree(tmp_path / "train", rng, classes=("b",), per_class=2, size=(12, 10))
    with pytest.raises(ds.CorruptDataError, match=r"pass size=\(height, width\)"):
        ds.load("imagefolder", "train", data_dir=tmp_path)
    assert ds.load("imagefolder", "train", data_dir=tmp_path, size=8).images.shape == (4, 8, 8, 3)


def test_missing_split_folder_names_the_ones_present(tmp_path, rng):
    formats.write_image_tree(tmp_path / "train", rng, per_class=1)
    formats.write_image_tree(tmp_path / "val", rng, per_class=1)
    with pytest.raises(ds.DatasetNotFoundError, match=r"test.*\['train', 'val'\]"):
        ds.ImageFolder(tmp_path, "test")


# --------------------------------------------------------------------------- search order


def test_search_order(tmp_path, rng, monkeypatch):
    places = {
        "explicit": tmp_path / "explicit",
        "env": tmp_path / "env-root" / "fashion-mnist",
        "project": tmp_path / "project-data" / "fashion-mnist",
        "debian": tmp_path / "debian-fashion-mnist",
    }
    sizes = {}
    for i, (key, folder) in enumerate(places.items()):
        formats.write_mnist(folder, rng, n_train=10 + i)
        sizes[key] = 10 + i
    monkeypatch.setenv(ds.DATA_ENV, str(tmp_path / "env-root"))
    assert ds.search_paths("fashion-mnist", places["explicit"]) == list(places.values())
    assert len(ds.load("fashion-mnist", data_dir=places["explicit"])) == sizes["explicit"]
    for key in ("env", "project", "debian"):
        assert len(ds.load("fashion-mnist")) == sizes[key]
        shutil.rmtree(places[key])
    with pytest.raises(ds.DatasetNotFoundError) as err:
        ds.load("fashion-mnist")
    message = str(err.value)
    for key in ("env", "project", "debian"):
        assert str(places[key]) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "python -m experiments.fetch fashion-mnist" in message


def test_debian_folder_only_for_fashion_mnist(tmp_path):
    assert tmp_path / "debian-fashion-mnist" not in ds.search_paths("mnist")
    assert ds.DATASETS["mnist"].system_dirs == ()
    assert ds.search_paths("fashion-mnist")[-1] == tmp_path / "debian-fashion-mnist"


def test_names_and_splits_are_checked(tmp_path):
    assert ds.canonical_name("CIFAR-10") == "cifar10" and ds.canonical_name("Fashion_MNIST") == "fashion-mnist"
    with pytest.raises(ValueError, match="unknown data set 'imagenet'.*fashion-mnist"):
        ds.load("imagenet")
    with pytest.raises(ValueError, match=r"splits \['train', 'test'\], not 'validation'"):
        ds.load("mnist", "validation")


# --------------------------------------------------------------------------- IDX errors


def test_missing_label_file_is_not_found(tmp_path, rng):
    formats.write_mnist(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ds.DatasetNotFoundError, match=r"t10k-labels-idx1-ubyte"):
        ds.load("mnist", "test", data_dir=tmp_path)
    assert len(ds.load("mnist", "train", data_dir=tmp_path)) == 30


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx(tmp_path, rng, gz):
    formats.write_mnist(tmp_path, rng, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ds.CorruptDataError, match=rf"{name}.*truncated"):
        ds.load("mnist", "train", data_dir=tmp_path)


def test_wrong_magic_number(tmp_path, rng):
    formats.write_mnist(tmp_path, rng, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(ds.CorruptDataError, match=r"t10k-labels-idx1-ubyte: wrong magic number 0x89504e47"):
        ds.load("mnist", "test", data_dir=tmp_path)


def test_image_label_count_mismatch(tmp_path, rng):
    formats.write_mnist(tmp_path, rng, gz=True)
    formats.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(11, np.uint8), gz=True)
    with pytest.raises(ds.CorruptDataError, match=r"12 images but 11 labels"):
        ds.load("mnist", "test", data_dir=tmp_path)


def test_labels_out_of_range(tmp_path, rng):
    formats.write_mnist(tmp_path, rng, gz=False)
    formats.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(12, 10, np.uint8))
    with pytest.raises(ds.CorruptDataError, match=r"labels range over 10\.\.10, outside the 10 classes"):
        ds.load("mnist", "test", data_dir=tmp_path)


def test_broken_gzip_stream(tmp_path, rng):
    formats.write_mnist(tmp_path, rng, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"x" * 100)[:-12])
    with pytest.raises(ds.CorruptDataError, match=r"train-labels-idx1-ubyte\.gz: broken gzip stream"):
        ds.load("mnist", "train", data_dir=tmp_path)


# --------------------------------------------------------------------------- validation split


def test_validation_split_is_stratified_deterministic_and_disjoint(rng):
    labels = np.repeat(np.arange(5), [100, 40, 7, 1, 250])
    rng.shuffle(labels)
    fit, val = ds.validation_split(labels, 0.1, seed=3)
    counts = np.bincount(labels[val], minlength=5)
    np.testing.assert_array_equal(counts, [10, 4, 1, 0, 25])
    assert np.intersect1d(fit, val).size == 0 and len(fit) + len(val) == len(labels)
    assert (np.diff(fit) > 0).all() and (np.diff(val) > 0).all()
    fit2, val2 = ds.validation_split(labels, 0.1, seed=3)
    np.testing.assert_array_equal(val, val2)
    _, val3 = ds.validation_split(labels, 0.1, seed=4)
    assert not np.array_equal(val, val3)


def test_validation_split_per_class_choice_is_independent_of_other_classes():
    labels = np.repeat([0, 1], 50)
    _, val = ds.validation_split(labels, 0.2, seed=0)
    more = np.concatenate([labels, np.full(30, 2)])
    _, val_more = ds.validation_split(more, 0.2, seed=0)
    np.testing.assert_array_equal(val, val_more[more[val_more] < 2])


def test_validation_split_ignores_unlabelled_and_checks_input():
    labels = np.array([0, 0, -1, 1, 1, -1, 0, 1])
    fit, val = ds.validation_split(labels, 0.5)
    assert set(np.concatenate([fit, val]).tolist()) == {0, 1, 3, 4, 6, 7}
    with pytest.raises(ValueError, match="fraction"):
        ds.validation_split(labels, 1.0)
    with pytest.raises(ValueError, match="1-D"):
        ds.validation_split(labels.reshape(2, 4))


def test_checksum_depends_on_content_not_format(tmp_path, rng):
    written = formats.write_mnist(tmp_path / "gz", np.random.default_rng(0), gz=True)
    formats.write_mnist(tmp_path / "raw", np.random.default_rng(0), gz=False)
    a = ds.load("mnist", "train", data_dir=tmp_path / "gz").checksum()
    b = ds.load("mnist", "train", data_dir=tmp_path / "raw").checksum()
    assert a == b == ds.array_checksum(written["train"][0], written["train"][1])
    images = written["train"][0].copy()
    images[0, 0, 0] ^= 1
    assert ds.array_checksum(images, written["train"][1]) != a
