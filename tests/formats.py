"""Writers of small data sets in the exact on-disk formats the loaders read.

Each writer follows the format's published description (LeCun's IDX page, the
CIFAR and STL-10 pages, the SVHN .mat files), not our reader, so the tests read
files laid out as a third party would lay them out.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: 0x0000, type code, ndim, big-endian uint32 dims, big-endian data."""
    array = np.asarray(array)
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    code = IDX_CODES[np.dtype(big.dtype)]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + big.tobytes(order="C")


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def random_images(rng, n, h, w, c=None):
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def write_mnist(folder: Path, rng, n_train=30, n_test=12, gz=True, n_classes=10):
    """MNIST/Fashion-MNIST file names; returns {split: (images, labels)}."""
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = random_images(rng, n, 28, 28)
        labels = (np.arange(n) % n_classes).astype(np.uint8)
        rng.shuffle(labels)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
        out[split] = (images, labels.astype(np.int64))
    return out


def py2_pickle(obj) -> bytes:
    """Pickle ``obj`` the way Python 2's cPickle (protocol 2) wrote the CIFAR files.

    Strings become Python 2 ``str`` (BINSTRING opcodes) and numpy uint8 arrays
    are written as numpy 1.x under Python 2 wrote them (``_reconstruct`` +
    ``BUILD`` with the raw bytes as a Python 2 string). Supports dict, list,
    tuple, int, bool, None, str, bytes and 2-D uint8 arrays: what a CIFAR batch holds.
    """
    out = bytearray(b"\x80\x02")

    def string(b: bytes):
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def emit(o):
        if o is None:
            out.extend(b"N")
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, str):
            string(o.encode("latin1"))
        elif isinstance(o, bytes):
            string(o)
        elif isinstance(o, (list, tuple)):
            out.extend(b"(")
            for item in o:
                emit(item)
            out.extend(b"t" if isinstance(o, tuple) else b"l")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, np.ndarray) and o.dtype == np.uint8:
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\n")
            out.extend(b"cnumpy\nndarray\n")
            emit((0,))
            string(b"b")
            out.extend(b"\x87R")  # TUPLE3, REDUCE
            out.extend(b"(J\x01\x00\x00\x00")  # state = (1, shape, dtype, False, raw)
            emit(tuple(int(d) for d in o.shape))
            out.extend(b"cnumpy\ndtype\n")
            emit(("u1", 0, 1))
            out.extend(b"R")
            emit((3, "|", None, None, None, -1, -1, 0))
            out.extend(b"b")  # BUILD the dtype
            out.extend(b"\x89")
            string(np.ascontiguousarray(o).tobytes())
            out.extend(b"tb")  # the state tuple, BUILD the array
        else:
            raise TypeError(f"py2_pickle cannot write {type(o).__name__}")

    emit(obj)
    out.extend(b".")
    return bytes(out)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072): the red plane, then green, then blue, each row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_cifar10(folder: Path, rng, per_batch=4, n_test=6, py3_bytes_keys=False):
    """cifar-10-batches-py/: five training batches, a test batch, batches.meta, pickled as
    the original files were (Python 2 cPickle, protocol 2), or with Python 3 and bytes keys."""
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)

    def dump(path, obj):
        if py3_bytes_keys:
            obj = {k.encode(): v for k, v in obj.items()}
            path.write_bytes(pickle.dumps(obj, protocol=2))
        else:
            path.write_bytes(py2_pickle(obj))

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    dump(base / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072})
    train_images, train_labels = [], []
    for i in range(1, 6):
        imgs = random_images(rng, per_batch, 32, 32, 3)
        labs = [int(v) for v in rng.integers(0, 10, per_batch)]
        dump(base / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "labels": labs,
                                         "data": _cifar_rows(imgs), "filenames": ["x.png"] * per_batch})
        train_images.append(imgs)
        train_labels += labs
    test_images = random_images(rng, n_test, 32, 32, 3)
    test_labels = [int(v) for v in rng.integers(0, 10, n_test)]
    dump(base / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_labels,
                               "data": _cifar_rows(test_images), "filenames": ["y.png"] * n_test})
    return {
        "train": (np.concatenate(train_images), np.array(train_labels)),
        "test": (test_images, np.array(test_labels)),
        "classes": tuple(names),
    }


def write_cifar100(folder: Path, rng, n_train=10, n_test=5):
    """cifar-100-python/{train,test,meta} with fine and coarse labels (str keys)."""
    base = folder / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    fine = [f"fine{i}" for i in range(100)]
    coarse = [f"coarse{i}" for i in range(20)]
    with open(base / "meta", "wb") as f:
        pickle.dump({"fine_label_names": fine, "coarse_label_names": coarse}, f, protocol=4)
    out = {"fine": tuple(fine), "coarse": tuple(coarse)}
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = random_images(rng, n, 32, 32, 3)
        f_lab = [int(v) for v in rng.integers(0, 100, n)]
        c_lab = [v // 5 for v in f_lab]
        with open(base / split, "wb") as f:
            pickle.dump({"data": _cifar_rows(imgs), "fine_labels": f_lab, "coarse_labels": c_lab,
                         "filenames": ["z.png"] * n}, f, protocol=4)
        out[split] = (imgs, np.array(f_lab), np.array(c_lab))
    return out


def write_svhn(folder: Path, rng, n_train=9, n_test=5):
    """{train,test}_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) with the digit 0 stored as 10."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = random_images(rng, n, 32, 32, 3)
        digits = np.arange(n) % 10
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        savemat(folder / f"{split}_32x32.mat", {"X": imgs.transpose(1, 2, 3, 0), "y": y})
        out[split] = (imgs, digits.astype(np.int64))
    return out


def write_stl10(folder: Path, rng, n_train=6, n_test=4, n_unlabeled=2):
    """stl10_binary/: *_X.bin (each image column-major: channel, column, row), *_y.bin (1..10),
    class_names.txt."""
    base = folder / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (base / "class_names.txt").write_text("\n".join(names) + "\n")
    out = {"classes": tuple(names)}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        imgs = random_images(rng, n, 96, 96, 3)
        imgs.transpose(0, 3, 2, 1).tofile(base / f"{split}_X.bin")
        labels = (np.arange(n) % 10).astype(np.int64)
        if split != "unlabeled":
            (labels + 1).astype(np.uint8).tofile(base / f"{split}_y.bin")
        out[split] = (imgs, labels)
    return out


def write_image_tree(root: Path, rng, classes=("cat", "dog", "owl"), per_class=5, size=(20, 24),
                     ext=".png", mode="RGB"):
    """root/<class>/<i><ext>, written with Pillow; returns {path: array} for lossless formats."""
    from PIL import Image

    written = {}
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (*size, 3) if mode == "RGB" else size
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            path = root / c / f"{i:03d}{ext}"
            Image.fromarray(arr).save(path)
            written[path] = arr
    return written
