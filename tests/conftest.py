"""Shared fixtures."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from experiments import datasets as ds


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """Hide the machine's data folders and environment from the data-set layer: the project's data/
    becomes tmp_path/project-data, $FVA_DATA_DIR is unset and Debian's Fashion-MNIST folder becomes
    tmp_path/debian-fashion-mnist (absent unless a test writes it)."""
    monkeypatch.setattr(ds, "PROJECT_DATA", tmp_path / "project-data")
    monkeypatch.delenv(ds.DATA_ENV, raising=False)
    spec = ds.DATASETS["fashion-mnist"]
    monkeypatch.setitem(ds.DATASETS, "fashion-mnist",
                        dataclasses.replace(spec, system_dirs=(tmp_path / "debian-fashion-mnist",)))


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: tiny problems gain nothing from intra-op threads, and on a
    busy machine thread start-up and contention dominate. Results do not depend on it; the previous
    count is restored afterwards. Test modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
