"""Shared fixtures."""

from __future__ import annotations

import dataclasses

import pytest

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
