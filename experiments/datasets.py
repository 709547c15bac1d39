"""One data-set layer for every experiment.

``load(name, split)`` returns a :class:`ImageSet`: images as ``uint8`` arrays
(``N x H x W`` for grey data, ``N x H x W x 3`` for colour, channels in RGB
order), ``int64`` labels in ``0 .. n_classes - 1`` and the class names.
:class:`ImageFolder` reads a class-per-folder tree lazily, for collections too
large for memory.

Formats, each read in its original on-disk layout:

==================  ==========================================================
name                files
==================  ==========================================================
``fashion-mnist``   ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (IDX)
``mnist``           same file names as Fashion-MNIST (IDX)
``cifar10``         ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
``cifar100``        ``cifar-100-python/{train,test,meta}`` (fine or coarse labels)
``svhn``            ``{train,test,extra}_32x32.mat`` (MATLAB, cropped digits)
``stl10``           ``stl10_binary/{train,test,unlabeled}_X.bin``, ``*_y.bin``,
                    ``class_names.txt``
``imagefolder``     ``ROOT/<split>/<class>/*`` or ``ROOT/<class>/*`` (JPEG, PNG,
                    BMP, TIFF, WebP, GIF...)
==================  ==========================================================

Where the files are looked for, in order (the first folder that holds them wins):

1. the ``data_dir`` argument;
2. ``$FVA_DATA_DIR/<name>`` (a shared data root, e.g. on a cluster);
3. ``data/<name>/`` in the project checkout;
4. for Fashion-MNIST only, Debian's ``/usr/share/datasets/fashion-mnist``
   (package ``dataset-fashion-mnist``).

Inside each folder, the sub-folders torchvision's downloads create are tried too
(``FashionMNIST/raw``, ``MNIST/raw``, ``raw``), so ``python -m experiments.fetch``
and an existing torchvision cache both work. When nothing is found, the error
names every place looked at and the ways to get the data.

Splits: ``train`` and ``test`` are the official splits, unchanged, in file order
(SVHN adds ``extra``, STL-10 ``unlabeled`` with labels ``-1``).
:func:`validation_split` carves a deterministic, stratified, seeded validation
part out of ``train`` for model selection; the test split is for the final
number only.

Pickled CIFAR batches are read with an unpickler that accepts only plain Python
values and numpy arrays, so a malicious file cannot run code.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetNotFoundError",
    "CorruptDataError",
    "ImageSet",
    "ImageFolder",
    "load",
    "find",
    "canonical_name",
    "search_paths",
    "validation_split",
    "read_idx",
]

#: Project-local data folder (``data/`` next to the package folders).
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"
#: Environment variable naming a root that holds one folder per data set.
DATA_ENV = "FVA_DATA_DIR"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm",
)


# --------------------------------------------------------------------------- errors


class DatasetError(Exception):
    """Base class of the data-set layer's errors."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No folder holding the data set's files was found."""


class CorruptDataError(DatasetError, ValueError):
    """A file exists but its content is not what its format requires."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of a data set, in memory.

    Attributes
    ----------
    images : uint8 array, (N, H, W) or (N, H, W, 3), RGB channel order.
    labels : int64 array, (N,), in ``0 .. len(classes) - 1`` (``-1``: unlabeled).
    classes : class names, index = label.
    name, split : what was asked for.
    source : the folder the files were read from.
    skipped : ``(path, reason)`` of images left out (image folders with
        ``on_error="skip"``).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str
    split: str
    source: Path
    skipped: tuple[tuple[str, str], ...] = field(default=())

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else self.images.shape[3]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:3])

    def class_counts(self) -> np.ndarray:
        """Images per class, (n_classes,) int64 (unlabeled images not counted)."""
        lab = self.labels[self.labels >= 0]
        return np.bincount(lab, minlength=len(self.classes)).astype(np.int64)

    def checksum(self) -> str:
        """SHA-256 of the decoded content (shape, pixels, labels), independent of
        the file format or compression it was read from."""
        return array_checksum(self.images, self.labels)


def array_checksum(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr((images.dtype.str, images.shape, labels.dtype.str, labels.shape)).encode())
    h.update(np.ascontiguousarray(images).data)
    h.update(np.ascontiguousarray(labels).data)
    return h.hexdigest()


# --------------------------------------------------------------------------- search


def search_paths(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders where data set ``name`` is looked for, in order."""
    spec = _spec(name)
    paths: list[Path] = []
    if data_dir is not None:
        paths.append(Path(data_dir).expanduser())
    env = os.environ.get(DATA_ENV)
    if env:
        paths.append(Path(env).expanduser() / spec.name)
    paths.append(PROJECT_DATA / spec.name)
    paths.extend(spec.system_dirs)
    return paths


def find(name: str, split: str = "train", data_dir: str | os.PathLike | None = None) -> Path:
    """The first folder, in :func:`search_paths` order, holding ``split`` of ``name``.

    Raises :class:`DatasetNotFoundError` naming every place looked at and the
    ways to obtain the data.
    """
    spec = _spec(name)
    _check_split(spec, split)
    looked: list[str] = []
    for base in search_paths(name, data_dir):
        for folder in [base, *(base / sub for sub in spec.subdirs)]:
            if spec.present(folder, split):
                return folder
            looked.append(str(folder))
    raise DatasetNotFoundError(_not_found_message(spec, split, looked))


def _not_found_message(spec: _Spec, split: str, looked: list[str]) -> str:
    lines = [f"{spec.title} ({split} split) not found. Looked for {spec.describe(split)} in:"]
    lines += [f"  - {p}" for p in looked]
    lines.append("Ways to get it:")
    lines += [f"  - {way}" for way in spec.how_to_get()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- IDX (MNIST family)

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetNotFoundError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as exc:
            raise CorruptDataError(
                f"{path}: broken gzip stream ({exc}); the file is truncated or damaged: "
                "delete it and download it again"
            ) from exc
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not.

    Layout: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B short,
    0x0C int, 0x0D float, 0x0E double), the number of dimensions, then one
    big-endian int32 per dimension, then the data in C order, big-endian.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise CorruptDataError(f"{path}: {len(data)} bytes, too short for an IDX header (truncated?)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_TYPES or ndim == 0:
        raise CorruptDataError(
            f"{path}: wrong magic number 0x{data[:4].hex()} (an IDX file starts with 0x0000 then a "
            "type code 08/09/0B/0C/0D/0E and the number of dimensions): not an IDX file"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDataError(f"{path}: header cut short after {len(data)} bytes (truncated file)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise CorruptDataError(
            f"{path}: {problem}: the header announces shape {dims} ({expected} bytes) but the "
            f"file holds {len(data)} bytes; delete it and download it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _mnist_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    prefix = "train" if split == "train" else "t10k"
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        stem = f"{prefix}-{kind}-ubyte"
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found[0], found[1]


def _load_mnist(folder: Path, split: str, classes: tuple[str, ...], **_: object):
    img_path, lab_path = _mnist_files(folder, split)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise CorruptDataError(f"{img_path}: expected a 3-D ubyte IDX array, found {images.ndim}-D {images.dtype}")
    if labels.ndim != 1:
        raise CorruptDataError(f"{lab_path}: expected a 1-D IDX array of labels, found {labels.ndim}-D")
    _check_counts(images, labels, img_path, lab_path)
    return images, _check_labels(labels, len(classes), lab_path), classes


# --------------------------------------------------------------------------- CIFAR (python pickles)


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _codecs_encode():
    import codecs

    return codecs.encode


# The only globals a CIFAR batch needs: numpy's array reconstruction, and the
# bytes constructor that protocol-2 pickles written by Python 3 use.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): _codecs_encode,
}


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle asks for a global outside the allowed set."""


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler that only builds plain Python values and numpy arrays.

    Any other global (``os.system``, ``builtins.eval``, ...) is refused, so a
    crafted file cannot run code when it is read.
    """

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[module, name]()
        raise _RefusedGlobal(
            f"refusing to load global {module}.{name}: CIFAR files hold only plain values and "
            "numpy arrays, so this file is not a genuine CIFAR batch"
        )


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _PlainUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise CorruptDataError(f"{path}: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, struct.error, IndexError, TypeError) as exc:
        raise CorruptDataError(
            f"{path}: not a readable CIFAR python batch ({type(exc).__name__}: {exc}); the file "
            "is truncated or damaged: delete it and download it again"
        ) from exc
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _field(batch: dict, key: str, path: Path):
    if key not in batch:
        raise CorruptDataError(f"{path}: no '{key}' entry (found {sorted(batch)}); not a CIFAR batch of this kind")
    return batch[key]


def _names(values, path: Path) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


def _cifar_rows_to_images(data, path: Path) -> np.ndarray:
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CorruptDataError(
            f"{path}: 'data' must be uint8 of shape (N, 3072) (32x32x3, channel-major); found "
            f"{data.dtype} {data.shape}"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


_CIFAR10 = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _load_cifar10(folder: Path, split: str, **_: object):
    meta = folder / "batches.meta"
    classes = _names(_field(_unpickle(meta), "label_names", meta), meta)
    images, labels = [], []
    for fname in _CIFAR10[split]:
        path = folder / fname
        batch = _unpickle(path)
        imgs = _cifar_rows_to_images(_field(batch, "data", path), path)
        labs = np.asarray(_field(batch, "labels", path), dtype=np.int64)
        _check_counts(imgs, labs, path, path)
        images.append(imgs)
        labels.append(_check_labels(labs, len(classes), path))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), classes


def _load_cifar100(folder: Path, split: str, *, label_type: str = "fine", **_: object):
    if label_type not in ("fine", "coarse"):
        raise ValueError(f"label_type must be 'fine' or 'coarse', not {label_type!r}")
    meta = folder / "meta"
    classes = _names(_field(_unpickle(meta), f"{label_type}_label_names", meta), meta)
    path = folder / split
    batch = _unpickle(path)
    images = _cifar_rows_to_images(_field(batch, "data", path), path)
    labels = np.asarray(_field(batch, f"{label_type}_labels", path), dtype=np.int64)
    _check_counts(images, labels, path, path)
    return np.ascontiguousarray(images), _check_labels(labels, len(classes), path), classes


# --------------------------------------------------------------------------- SVHN (.mat)

SVHN_CLASSES = tuple(str(d) for d in range(10))


def _load_svhn(folder: Path, split: str, **_: object):
    from scipy.io import loadmat

    path = folder / f"{split}_32x32.mat"
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except Exception as exc:  # scipy raises many types on damaged files
        raise CorruptDataError(
            f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc}); it is truncated or "
            "damaged: delete it "
            "and download it again"
        ) from exc
    for key in ("X", "y"):
        if key not in mat:
            raise CorruptDataError(f"{path}: no variable '{key}' (SVHN files hold X and y)")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise CorruptDataError(f"{path}: X must be uint8 of shape (H, W, 3, N); found {x.dtype} {x.shape}")
    images = np.ascontiguousarray(x.transpose(3, 0, 1, 2))
    labels = np.asarray(y, dtype=np.int64).reshape(-1)
    _check_counts(images, labels, path, path)
    labels = np.where(labels == 10, 0, labels)  # SVHN stores the digit 0 as label 10
    return images, _check_labels(labels, 10, path), SVHN_CLASSES


# --------------------------------------------------------------------------- STL-10 (binary)

STL10_SIZE = 96


def _load_stl10(folder: Path, split: str, **_: object):
    names_path = folder / "class_names.txt"
    classes = tuple(line.strip() for line in names_path.read_text().splitlines() if line.strip())
    x_path = folder / f"{split}_X.bin"
    raw = np.fromfile(x_path, dtype=np.uint8)
    per_image = 3 * STL10_SIZE * STL10_SIZE
    if raw.size == 0 or raw.size % per_image:
        raise CorruptDataError(
            f"{x_path}: {raw.size} bytes is not a whole number of 96x96x3 images ({per_image} bytes "
            "each): the file is truncated; delete it and download it again"
        )
    # Each image is stored column-major per channel (MATLAB order): C, W, H.
    images = np.ascontiguousarray(raw.reshape(-1, 3, STL10_SIZE, STL10_SIZE).transpose(0, 3, 2, 1))
    if split == "unlabeled":
        return images, np.full(len(images), -1, dtype=np.int64), classes
    y_path = folder / f"{split}_y.bin"
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1  # stored as 1..10
    _check_counts(images, labels, x_path, y_path)
    return images, _check_labels(labels, len(classes), y_path, stored_offset=1), classes


# --------------------------------------------------------------------------- checks


def _check_counts(images: np.ndarray, labels: np.ndarray, img_path: Path, lab_path: Path) -> None:
    if len(images) != len(labels):
        where = f"{img_path}" if img_path == lab_path else f"{img_path} and {lab_path}"
        raise CorruptDataError(
            f"{where}: {len(images)} images but {len(labels)} labels; the files do not belong "
            "together or one is truncated: download both again"
        )


def _check_labels(labels: np.ndarray, n_classes: int, path: Path, stored_offset: int = 0) -> np.ndarray:
    labels = labels.astype(np.int64, copy=False)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        lo, hi = labels.min() + stored_offset, labels.max() + stored_offset
        raise CorruptDataError(
            f"{path}: labels range over {lo}..{hi}, outside the {n_classes} classes of this data set"
        )
    return labels


# --------------------------------------------------------------------------- image folders


def _imread(path: Path, color: str, size: tuple[int, int] | None) -> np.ndarray:
    """Decode one image to uint8 (H, W) or (H, W, 3); raises OSError/ValueError if unreadable."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if color == "rgb":
            im = im.convert("RGB")
        elif color == "gray":
            im = im.convert("L")
        if size is not None:
            im = _cover_and_crop(im, size)
        arr = np.asarray(im)
    if arr.dtype != np.uint8:
        raise ValueError(f"decodes to {arr.dtype}, not 8-bit; pass color='rgb' or color='gray'")
    return arr


def _cover_and_crop(im, size: tuple[int, int]):
    """Scale so the image covers (height, width), keeping its aspect, then centre-crop."""
    from PIL import Image

    h, w = size
    scale = max(h / im.height, w / im.width)
    new_w, new_h = max(w, round(im.width * scale)), max(h, round(im.height * scale))
    im = im.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (new_w - w) // 2, (new_h - h) // 2
    return im.crop((left, top, left + w, top + h))


def _normalise_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def _has_split_folders(root: Path) -> bool:
    return any((root / s).is_dir() for s in ImageFolder.SPLIT_FOLDERS)


class ImageFolder(Sequence):
    """Lazy reader of a class-per-folder image tree.

    Layouts:

    - ``root/<split>/<class>/<image>`` when any of ``train``, ``val``, ``test``
      exists under ``root``: the split is that folder; the classes are the union
      of class folders over all split folders (sorted), so labels agree across
      splits.
    - ``root/<class>/<image>`` otherwise: each class's files (sorted by name) are
      shuffled with ``seed`` and the first ``round(test_fraction * n)`` go to
      ``test``, the rest to ``train``: deterministic and stratified.

    ``folder[i]`` decodes one image and returns ``(image, label)``; images are
    uint8 RGB (``color="rgb"``), grey (``"gray"``) or as stored (``"keep"``),
    scaled to cover ``size`` = (height, width) and centre-cropped when ``size``
    is given. A class folder without images is an error; an unreadable image
    raises :class:`CorruptDataError` naming the file (use :meth:`verify` to
    drop them up front).
    """

    SPLIT_FOLDERS = ("train", "val", "test")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        color: str = "rgb",
        size: int | tuple[int, int] | None = None,
        test_fraction: float = 0.2,
        seed: int = 0,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        transform=None,
    ):
        if color not in ("rgb", "gray", "keep"):
            raise ValueError(f"color must be 'rgb', 'gray' or 'keep', not {color!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), not {test_fraction}")
        self.root = Path(root).expanduser()
        self.split = split
        self.color = color
        self.size = _normalise_size(size)
        self.test_fraction = test_fraction
        self.seed = seed
        self.extensions = tuple(e.lower() for e in extensions)
        self.transform = transform
        self.paths, self.labels, self.classes = self._index()

    # -- indexing ---------------------------------------------------------------

    def _images_in(self, folder: Path) -> list[Path]:
        return sorted(
            p for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in self.extensions and not p.name.startswith(".")
        )

    def _class_dirs(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _empty_class_error(self, folder: Path) -> CorruptDataError:
        return CorruptDataError(
            f"{folder}: class folder holds no images (looked for {', '.join(self.extensions)}); "
            "add images or remove the folder"
        )

    def _index(self) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
        root = self.root
        if not root.is_dir():
            raise DatasetNotFoundError(f"{root}: image folder not found (expected ROOT/<class>/<images>)")
        if _has_split_folders(root):
            split_dir = root / self.split
            present = [s for s in self.SPLIT_FOLDERS if (root / s).is_dir()]
            if not split_dir.is_dir():
                raise DatasetNotFoundError(
                    f"{root}: has split folders {present} but no '{self.split}' folder; "
                    f"ask for one of {present}"
                )
            classes = sorted({d.name for s in present for d in self._class_dirs(root / s)})
            paths, labels = [], []
            for label, name in enumerate(classes):
                folder = split_dir / name
                if not folder.is_dir():
                    continue
                files = self._images_in(folder)
                if not files:
                    raise self._empty_class_error(folder)
                paths += files
                labels += [label] * len(files)
        else:
            if self.split not in ("train", "test"):
                raise ValueError(
                    f"{root} has no split folders, so only 'train' and 'test' (carved by "
                    f"test_fraction={self.test_fraction}) exist, not {self.split!r}"
                )
            class_dirs = self._class_dirs(root)
            classes = [d.name for d in class_dirs]
            paths, labels = [], []
            for label, folder in enumerate(class_dirs):
                files = self._images_in(folder)
                if not files:
                    raise self._empty_class_error(folder)
                order = np.random.default_rng([self.seed, label]).permutation(len(files))
                n_test = int(round(self.test_fraction * len(files)))
                chosen = order[:n_test] if self.split == "test" else order[n_test:]
                for i in np.sort(chosen):
                    paths.append(files[i])
                    labels.append(label)
        if not classes:
            raise DatasetNotFoundError(f"{root}: no class folders found (expected ROOT/<class>/<images>)")
        return paths, np.asarray(labels, dtype=np.int64), tuple(classes)

    # -- access -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> np.ndarray:
        """Decode image ``i`` (no transform)."""
        path = self.paths[i]
        try:
            return _imread(path, self.color, self.size)
        except (OSError, ValueError, SyntaxError) as exc:
            raise CorruptDataError(f"{path}: unreadable image ({exc})") from exc

    def __getitem__(self, i: int):
        if isinstance(i, slice):
            raise TypeError("ImageFolder takes one index at a time; use read_many(indices) for several")
        image = self.read(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])

    def verify(self, on_error: str = "skip") -> list[tuple[str, str]]:
        """Decode every image once. With ``on_error="skip"`` unreadable files are
        dropped from this reader and returned as ``(path, reason)``; with
        ``"raise"`` the first one raises :class:`CorruptDataError`."""
        bad, keep = [], []
        for i, path in enumerate(self.paths):
            try:
                self.read(i)
                keep.append(i)
            except CorruptDataError as exc:
                if on_error == "raise":
                    raise
                bad.append((str(path), str(exc.__cause__ or exc)))
        self.paths = [self.paths[i] for i in keep]
        self.labels = self.labels[keep]
        return bad

    def read_all(self, on_error: str = "raise") -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """Decode every image into one array: ``(images, labels, skipped)``.

        All images must have one size unless ``size`` was given. With
        ``on_error="skip"`` unreadable images are left out and listed in
        ``skipped``; with ``"raise"`` the first one raises.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        images: np.ndarray | None = None
        keep: list[int] = []
        skipped: list[tuple[str, str]] = []
        for i, path in enumerate(self.paths):
            try:
                img = self.read(i)
            except CorruptDataError as exc:
                if on_error == "raise":
                    raise CorruptDataError(
                        f"{exc} (pass on_error='skip' to leave unreadable images out)"
                    ) from exc.__cause__
                skipped.append((str(path), str(exc.__cause__ or exc)))
                continue
            if images is None:
                images = np.empty((len(self.paths), *img.shape), dtype=np.uint8)
            elif img.shape != images.shape[1:]:
                raise CorruptDataError(
                    f"{path}: image of shape {img.shape}, but {self.paths[keep[0]]} has "
                    f"{images.shape[1:]}; pass size=(height, width) to scale and crop all images "
                    "to one size"
                )
            images[len(keep)] = img
            keep.append(i)
        if images is None:
            raise CorruptDataError(f"{self.root}: no readable image in split {self.split!r}")
        return images[: len(keep)], self.labels[keep], skipped

    def checksum(self) -> str:
        """SHA-256 over the relative paths, labels and file bytes (no decoding)."""
        h = hashlib.sha256()
        for path, label in zip(self.paths, self.labels):
            h.update(f"{path.relative_to(self.root)}\0{label}\0".encode())
            h.update(path.read_bytes())
        return h.hexdigest()


def _load_imagefolder(
    folder: Path,
    split: str,
    *,
    color: str = "rgb",
    size=None,
    test_fraction: float = 0.2,
    seed: int = 0,
    on_error: str = "raise",
    **_: object,
):
    reader = ImageFolder(folder, split, color=color, size=size, test_fraction=test_fraction, seed=seed)
    images, labels, skipped = reader.read_all(on_error=on_error)
    return images, labels, reader.classes, skipped


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Spec:
    name: str
    title: str
    splits: tuple[str, ...]
    loader: object
    present: object  # (folder, split) -> bool
    files: dict  # split -> human-readable file names
    subdirs: tuple[str, ...] = ()
    system_dirs: tuple[Path, ...] = ()
    torchvision: str | None = None
    debian: str | None = None

    def describe(self, split: str) -> str:
        return self.files[split]

    def how_to_get(self) -> list[str]:
        ways = []
        if self.name == "imagefolder":
            return [
                "pass data_dir=ROOT (--data-dir ROOT) where ROOT holds one folder per class, "
                "or ROOT/train/<class> and ROOT/test/<class>",
                f"or put the tree under {PROJECT_DATA / self.name} or ${DATA_ENV}/{self.name}",
            ]
        if self.debian:
            ways.append(f"apt-get install {self.debian}   (Debian/Ubuntu, offline-friendly)")
        if self.torchvision:
            ways.append(f"python -m experiments.fetch {self.name}   (downloads into {PROJECT_DATA / self.name})")
        ways.append(f"copy the files into {PROJECT_DATA / self.name}, or into ${DATA_ENV}/{self.name}, "
                    "or pass data_dir=... (--data-dir ...)")
        return ways


def _all_files(folder: Path, names) -> bool:
    return all((folder / n).is_file() for n in names)


def _spec_mnist(name: str, title: str, classes: tuple[str, ...], tv_folder: str, **extra) -> _Spec:
    return _Spec(
        name=name,
        title=title,
        splits=("train", "test"),
        loader=lambda folder, split, **kw: _load_mnist(folder, split, classes),
        present=lambda folder, split: _mnist_files(folder, split) is not None,
        files={
            "train": "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]",
            "test": "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]",
        },
        subdirs=("raw", f"{tv_folder}/raw"),
        torchvision=tv_folder,
        **extra,
    )


DATASETS: dict[str, _Spec] = {}


def _register(spec: _Spec) -> None:
    if spec.name in DATASETS:
        raise ValueError(f"data set {spec.name!r} registered twice")
    DATASETS[spec.name] = spec


_register(_spec_mnist(
    "fashion-mnist", "Fashion-MNIST", FASHION_MNIST_CLASSES, "FashionMNIST",
    system_dirs=(DEBIAN_FASHION_MNIST,), debian="dataset-fashion-mnist",
))
_register(_spec_mnist("mnist", "MNIST", tuple(str(d) for d in range(10)), "MNIST"))
_register(_Spec(
    name="cifar10", title="CIFAR-10", splits=("train", "test"), loader=_load_cifar10,
    present=lambda folder, split: _all_files(folder, [*_CIFAR10[split], "batches.meta"]),
    files={s: "cifar-10-batches-py/{" + ",".join([*_CIFAR10[s], "batches.meta"]) + "}" for s in _CIFAR10},
    subdirs=("cifar-10-batches-py",), torchvision="CIFAR10",
))
_register(_Spec(
    name="cifar100", title="CIFAR-100", splits=("train", "test"), loader=_load_cifar100,
    present=lambda folder, split: _all_files(folder, [split, "meta"]),
    files={s: f"cifar-100-python/{{{s},meta}}" for s in ("train", "test")},
    subdirs=("cifar-100-python",), torchvision="CIFAR100",
))
_register(_Spec(
    name="svhn", title="SVHN", splits=("train", "test", "extra"), loader=_load_svhn,
    present=lambda folder, split: (folder / f"{split}_32x32.mat").is_file(),
    files={s: f"{s}_32x32.mat" for s in ("train", "test", "extra")},
    torchvision="SVHN",
))
_register(_Spec(
    name="stl10", title="STL-10", splits=("train", "test", "unlabeled"), loader=_load_stl10,
    present=lambda folder, split: _all_files(
        folder, [f"{split}_X.bin", "class_names.txt"] + ([] if split == "unlabeled" else [f"{split}_y.bin"])
    ),
    files={s: f"stl10_binary/{{{s}_X.bin,{s}_y.bin,class_names.txt}}" for s in ("train", "test")}
    | {"unlabeled": "stl10_binary/{unlabeled_X.bin,class_names.txt}"},
    subdirs=("stl10_binary",), torchvision="STL10",
))
_register(_Spec(
    name="imagefolder", title="Image folder", splits=("train", "val", "test"), loader=_load_imagefolder,
    present=lambda folder, split: folder.is_dir() and (
        (folder / split).is_dir() if _has_split_folders(folder)
        else split in ("train", "test") and any(p.is_dir() for p in folder.iterdir())
    ),
    files={s: f"ROOT/{s}/<class>/<images> or ROOT/<class>/<images>" for s in ("train", "val", "test")},
))


def _spec(name: str) -> _Spec:
    key = name.lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100",
           "stl-10": "stl10", "image-folder": "imagefolder"}.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]


def canonical_name(name: str) -> str:
    """The registered name of a data set (``"CIFAR-10"`` -> ``"cifar10"``); raises for unknown names."""
    return _spec(name).name


def _check_split(spec: _Spec, split: str) -> None:
    if split not in spec.splits:
        raise ValueError(f"{spec.title} has splits {list(spec.splits)}, not {split!r}")


# --------------------------------------------------------------------------- public entry points


def load(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None, **options) -> ImageSet:
    """Load one split of a data set into memory.

    Parameters
    ----------
    name : ``fashion-mnist``, ``mnist``, ``cifar10``, ``cifar100``, ``svhn``,
        ``stl10`` or ``imagefolder``.
    split : ``train`` or ``test`` (``extra`` for SVHN, ``unlabeled`` for STL-10,
        ``val`` for image folders that have one).
    data_dir : folder to look in first (see the module docstring for the order).
    **options : per format. ``cifar100``: ``label_type="fine"|"coarse"``.
        ``imagefolder``: ``color="rgb"|"gray"|"keep"``, ``size=(h, w)``,
        ``test_fraction=0.2``, ``seed=0``, ``on_error="raise"|"skip"``.

    Returns
    -------
    ImageSet with uint8 ``images`` (N, H, W) or (N, H, W, 3), int64 ``labels``
    (N,) and ``classes``.
    """
    spec = _spec(name)
    _check_split(spec, split)
    folder = find(spec.name, split, data_dir)
    out = spec.loader(folder, split, **options)
    images, labels, classes = out[:3]
    skipped = tuple(out[3]) if len(out) > 3 else ()
    return ImageSet(
        images=images, labels=labels, classes=tuple(classes), name=spec.name, split=split,
        source=folder, skipped=skipped,
    )


def validation_split(
    labels: np.ndarray, fraction: float = 0.1, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a stratified validation part out of a training split.

    Each class contributes ``round(fraction * n_class)`` images, chosen by a
    permutation seeded with ``(seed, class)``; the result depends only on the
    labels, ``fraction`` and ``seed``. Returns ``(fit_indices, val_indices)``,
    both sorted, disjoint, covering every index with a label ``>= 0``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1 (exclusive), not {fraction}")
    val = []
    for c in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == c)
        n_val = int(round(fraction * len(idx)))
        order = np.random.default_rng([seed, int(c)]).permutation(len(idx))
        val.append(idx[order[:n_val]])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    mask = labels >= 0
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx.astype(np.int64)
