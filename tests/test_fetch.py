"""``experiments.fetch``: torchvision's real download code against a loopback server
serving small files in the original formats, and the apt path's decisions."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import tarfile
import threading

import numpy as np
import pytest

import formats
from experiments import datasets as ds
from experiments import fetch


@pytest.fixture(autouse=True)
def isolated(isolated_data, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _serve_fashion_mnist(served, monkeypatch, url, rng):
    import torchvision.datasets as tvd

    written = formats.write_mnist(served, rng, n_train=25, n_test=15, gz=True)
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    monkeypatch.setattr(tvd.FashionMNIST, "mirrors", [url])
    monkeypatch.setattr(tvd.FashionMNIST, "resources", [(n, _md5(served / n)) for n in names])
    return written


def test_download_fashion_mnist_with_torchvision(tmp_path, server, monkeypatch):
    url, served = server
    written = _serve_fashion_mnist(served, monkeypatch, url, np.random.default_rng(0))
    monkeypatch.setattr(fetch, "apt_available", lambda: False)
    folder = fetch.fetch("fashion-mnist", log=lambda *_: None)
    assert folder == tmp_path / "project-data" / "fashion-mnist" / "FashionMNIST" / "raw"
    for split in ("train", "test"):
        data = ds.load("fashion-mnist", split)
        np.testing.assert_array_equal(data.images, written[split][0])
        np.testing.assert_array_equal(data.labels, written[split][1])
    assert not [p for p in (tmp_path / "project-data").iterdir() if p.name.startswith(".")]
    # Present now: a second fetch downloads nothing.
    monkeypatch.setattr(fetch, "torchvision_download", lambda *a: pytest.fail("downloaded again"))
    assert fetch.fetch("fashion-mnist", log=lambda *_: None) == folder


def test_download_cifar10_archive(tmp_path, server, monkeypatch):
    import torchvision.datasets as tvd

    url, served = server
    source = tmp_path / "source"
    written = formats.write_cifar10(source, np.random.default_rng(1))
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    base = source / "cifar-10-batches-py"
    monkeypatch.setattr(tvd.CIFAR10, "url", url + "cifar-10-python.tar.gz")
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", _md5(archive))
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{i}", _md5(base / f"data_batch_{i}")]
                                                     for i in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", _md5(base / "test_batch")]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                              "md5": _md5(base / "batches.meta")})
    target = tmp_path / "mydata"
    folder = fetch.fetch("cifar10", target, log=lambda *_: None)
    assert folder == target / "cifar-10-batches-py"
    assert sorted(p.name for p in target.iterdir()) == ["cifar-10-batches-py"]  # archive not kept
    data = ds.load("cifar10", "test", data_dir=target)
    np.testing.assert_array_equal(data.images, written["test"][0])


def test_failed_download_leaves_nothing_half_written(tmp_path, server, monkeypatch):
    import torchvision.datasets as tvd

    url, served = server
    _serve_fashion_mnist(served, monkeypatch, url, np.random.default_rng(2))
    resources = list(tvd.FashionMNIST.resources)
    resources[2] = (resources[2][0], "0" * 32)  # wrong checksum for one file
    monkeypatch.setattr(tvd.FashionMNIST, "resources", resources)
    target = tmp_path / "fm"
    with pytest.raises(ds.DatasetNotFoundError, match="could not obtain Fashion-MNIST") as err:
        fetch.fetch("fashion-mnist", target, method="download", log=lambda *_: None)
    assert "torchvision download" in str(err.value)
    assert list(target.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fm.download-")] == []


def test_apt_path_is_used_for_fashion_mnist_when_available(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    spec = ds.DATASETS["fashion-mnist"]
    monkeypatch.setitem(ds.DATASETS, "fashion-mnist", dataclasses.replace(spec, system_dirs=(debian,)))
    installed = []

    def fake_apt(package):
        installed.append(package)
        formats.write_mnist(debian, np.random.default_rng(3))

    monkeypatch.setattr(fetch, "apt_available", lambda: True)
    monkeypatch.setattr(fetch, "_apt_install", fake_apt)
    monkeypatch.setattr(fetch, "torchvision_download", lambda *a: pytest.fail("should not download"))
    assert fetch.fetch("fashion-mnist", log=lambda *_: None) == debian
    assert installed == ["dataset-fashion-mnist"]


def test_errors_name_every_way(monkeypatch):
    monkeypatch.setattr(fetch, "apt_available", lambda: False)
    with pytest.raises(ds.DatasetNotFoundError, match="apt-get: not available"):
        fetch.fetch("fashion-mnist", method="apt", log=lambda *_: None)
    with pytest.raises(ds.DatasetNotFoundError, match="CIFAR-10 has no Debian package"):
        fetch.fetch("cifar10", method="apt", log=lambda *_: None)
    with pytest.raises(ds.DatasetNotFoundError, match="nothing to download.*--data-dir"):
        fetch.fetch("imagefolder")
    with pytest.raises(ValueError, match="method"):
        fetch.fetch("mnist", method="ftp")

