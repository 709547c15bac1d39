"""Data for the trainer: in-memory image sets, batch sources, augmentation and per-batch preprocessing.

Data kinds
----------
The trainer (:mod:`cnn.train`) reads any of

a. a tuple ``(images, labels)`` of numpy arrays or tensors: images ``uint8`` ``(N, H, W)`` (grey)
   or ``(N, H, W, C)`` (channels last, the layout of ``experiments.datasets``), or floating point
   ``(N, C, H, W)``; labels integers in ``0 .. num_classes - 1``;
b. any object with ``.images`` and ``.labels`` (the project's ``ImageSet``), read as (a);
c. a map-style data set (``torch.utils.data.Dataset`` or any object with ``__len__`` and
   ``__getitem__``, e.g. ``experiments.datasets.ImageFolder``) whose items are
   ``(image, label)``: a tensor ``(C, H, W)`` (float or uint8), or a numpy array ``(H, W)`` /
   ``(H, W, C)`` (uint8, channels last) or ``(C, H, W)`` (float). It is read through a
   ``DataLoader`` (``num_workers``, pinned memory on CUDA, persistent workers); all items must
   share one size.

(a) and (b) become an :class:`ArrayData`: the whole set as one ``uint8`` (or ``float32``) tensor
``N x C x H x W``, on the GPU when it fits (``data_on_device``). A batch is then a slice of a
per-epoch permutation drawn from a seeded ``torch.Generator`` and gathered by one indexing
operation: no per-image Python, no host copies on the GPU-resident path. :class:`BatchSource`
gives the batches of every kind as ``(stored images, labels)`` on the training device.

Per-batch pipeline (:class:`Preprocess`; the same code for every input kind, on the training device)
--------------------------------------------------------------------------------------------------
1. augmentation (training only), on the stored values (``uint8``: padding is black, as
   torchvision's ``RandomCrop(padding=p)``): random crop of a zero-padded image, offsets
   ``dy, dx ~ U{0 .. 2p}``, and horizontal flip with probability 1/2, both in one gather::

       out[b, c, i, j] = pad(x)[b, c, dy_b + i, dx_b + (W - 1 - j if flip_b else j)]

2. ``x = x * scale_c + shift_c`` with ``scale_c = 1 / (s * std_c)``, ``shift_c = -mean_c / std_c``,
   ``s = 255`` for ``uint8`` storage and 1 for float storage: the usual ``(x / 255 - mean) / std``;
   ``mean`` and ``std`` are in units of ``x / 255`` (``uint8``) or of the stored floats;
3. bilinear resize (``antialias=False``) to ``input_size`` when it is set;
4. channels-last memory format when ``channels_last``.

The last partial batch of an epoch is kept (``drop_last=False``), except a final training batch of
a single image, which would break BatchNorm in training mode and is skipped.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ArrayData", "BatchSource", "Preprocess", "check_labels", "crop_flip", "random_crop_flip"]

#: Items sampled from a map-style data set to estimate mean and std when they are not given.
STATS_SAMPLE = 2048


# ----------------------------------------------------------------------------- in-memory image sets


def _as_tensor(a, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    try:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(a)))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numpy array or a tensor, got {type(a).__name__} ({e})") from e


def _images_nchw(images) -> torch.Tensor:
    """Images as a contiguous ``(N, C, H, W)`` tensor, ``uint8`` or ``float32`` (layouts in
    :class:`ArrayData`)."""
    x = _as_tensor(images, "images")
    if x.dtype == torch.uint8:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        elif x.ndim == 4:
            if x.shape[-1] > 4 and x.shape[1] <= 4:
                raise ValueError(
                    f"uint8 images must be channels-last (N, H, W, C); shape {tuple(x.shape)} looks "
                    "channels-first: pass images.transpose(0, 2, 3, 1) (numpy) or "
                    "images.permute(0, 2, 3, 1) (torch), or float images (N, C, H, W)")
            x = x.permute(0, 3, 1, 2)
        else:
            raise ValueError(f"uint8 images must be (N, H, W) or (N, H, W, C), got shape {tuple(x.shape)}")
    elif x.is_floating_point():
        if x.ndim == 3:
            x = x.unsqueeze(1)
        elif x.ndim != 4:
            raise ValueError(f"float images must be (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
        x = x.float()
    else:
        raise ValueError(
            f"images must be uint8 (0..255) or floating point, got {x.dtype}; "
            "convert with .astype(np.uint8) or .astype(np.float32)")
    if len(x) == 0:
        raise ValueError("the data set is empty (0 images)")
    return x.contiguous()


def _labels_vector(labels, n: int) -> torch.Tensor:
    """Labels as a contiguous int64 ``(n,)`` tensor, one per image."""
    y = _as_tensor(labels, "labels")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"labels must be integers, got {y.dtype}")
    y = y.reshape(-1).long()
    if len(y) != n:
        raise ValueError(f"images and labels differ in length: {n} images, {len(y)} labels; "
                         "pass one label per image")
    return y.contiguous()


class ArrayData:
    """An in-memory image set as one tensor ``images`` ``(N, C, H, W)`` (``uint8`` or ``float32``)
    and ``labels`` ``(N,)`` int64 (or None, for prediction).

    Accepts ``ArrayData(images, labels)`` with images ``uint8`` ``(N, H, W)`` / ``(N, H, W, C)``
    (channels last) or floating point ``(N, C, H, W)`` / ``(N, H, W)``, as numpy arrays or
    tensors; :meth:`from_any` also takes a tuple ``(images, labels)`` or an object with
    ``.images`` and ``.labels``. ``uint8`` pixels are read as ``x / 255`` by the trainer
    (:attr:`scale`), float pixels as they are.
    """

    def __init__(self, images, labels=None) -> None:
        self.images = _images_nchw(images)
        self.labels = None if labels is None else _labels_vector(labels, len(self.images))

    @classmethod
    def from_any(cls, data) -> ArrayData:
        """``ArrayData`` from an ``ArrayData``, a tuple ``(images, labels)`` or an object with
        ``.images`` and ``.labels``; a lone array or tensor gives unlabeled data."""
        if isinstance(data, ArrayData):
            return data
        if isinstance(data, (tuple, list)) and len(data) == 2:
            return cls(data[0], data[1])
        if hasattr(data, "images") and hasattr(data, "labels"):
            return cls(data.images, data.labels)
        if isinstance(data, (np.ndarray, torch.Tensor)):
            return cls(data, None)
        raise ValueError(
            f"cannot read data of type {type(data).__name__}: pass (images, labels), an object with "
            ".images and .labels, or a map-style data set of (image, label) items")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    @property
    def is_uint8(self) -> bool:
        return self.images.dtype == torch.uint8

    @property
    def scale(self) -> float:
        """Factor from stored values to the units of mean/std: 1/255 for uint8, else 1."""
        return 1 / 255 if self.is_uint8 else 1.0

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size() + (0 if self.labels is None else 8 * len(self))

    def mean_std(self, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation over every pixel (float64 accumulation), in the
        units of ``x * scale``. A constant channel gets std 1."""
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        for i in range(0, len(self), chunk):
            x = self.images[i:i + chunk].to("cpu", torch.float64) * self.scale
            total += x.sum((0, 2, 3))
            squares += x.square().sum((0, 2, 3))
        n = len(self) * self.image_size[0] * self.image_size[1]
        mean = total / n
        std = (squares / n - mean.square()).clamp_min(0).sqrt()
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return tuple(mean.tolist()), tuple(std.tolist())

    def to(self, device) -> ArrayData:
        out = ArrayData.__new__(ArrayData)
        out.images = self.images.to(device)
        out.labels = None if self.labels is None else self.labels.to(device)
        return out


# ----------------------------------------------------------------------------- map-style data sets


def is_map_dataset(data) -> bool:
    """True for a map-style data set of ``(image, label)`` items (kind (c) of the module docstring)."""
    if isinstance(data, (tuple, list, np.ndarray, torch.Tensor, ArrayData)):
        return False
    if hasattr(data, "images") and hasattr(data, "labels"):
        return False
    return isinstance(data, torch.utils.data.Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__"))


def _item_to_chw(img) -> torch.Tensor:
    """One image of a map-style data set as a (C, H, W) tensor (see the module docstring)."""
    if isinstance(img, torch.Tensor):
        t = img.detach()
        if t.ndim == 2:
            t = t.unsqueeze(0)
        return t
    a = np.asarray(img)  # numpy arrays and PIL images
    t = torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim == 2:
        return t.unsqueeze(0)
    if t.ndim == 3 and t.dtype == torch.uint8:
        return t.permute(2, 0, 1)
    return t


def collate(items) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image, label)`` items -> images ``(B, C, H, W)`` (``uint8`` or ``float32``), labels ``(B,)`` int64."""
    images, labels = [], []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError("a map-style data set must yield (image, label) pairs")
        images.append(_item_to_chw(item[0]))
        labels.append(int(item[1]))
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise ValueError(f"the images of a batch differ in shape {sorted(shapes)}; resize them in the data set")
    x = torch.stack(images)
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise ValueError(f"data set images must be uint8 or floating point, got {x.dtype}")
    if x.is_floating_point():
        x = x.float()
    return x, torch.tensor(labels, dtype=torch.long)


# ----------------------------------------------------------------------------- batch sources


class BatchSource:
    """Batches of (stored images, labels) on ``device`` from an :class:`ArrayData` (or what
    :meth:`ArrayData.from_any` reads) or a map-style data set.

    ``generator`` (CPU) draws the per-epoch order when ``shuffle``; ``on_device`` puts array data
    on the GPU (None: when it takes under a quarter of the free memory). ``len(source)`` is the
    number of batches per epoch; ``sample`` holds the first stored images, ``scale`` the factor to
    the units of mean/std.
    """

    def __init__(self, data, *, device: torch.device, batch_size: int, shuffle: bool, drop_last: bool,
                 on_device: bool | None, num_workers: int, generator: torch.Generator | None,
                 name: str, need_labels: bool) -> None:
        self.device, self.batch_size, self.shuffle, self.drop_last = device, batch_size, shuffle, drop_last
        self.generator = generator
        self.name = name
        self.num_classes: int | None = None  # set once known: streamed labels are checked against it
        if is_map_dataset(data):
            self._open_dataset(data, num_workers)
        else:
            self._open_arrays(data, on_device, need_labels)
        self.steps = self.n // batch_size if drop_last else math.ceil(self.n / batch_size)
        if not drop_last and self.n % batch_size == 1 and self.n > batch_size and shuffle:
            self.steps -= 1  # a final batch of one image breaks BatchNorm in training mode: skip it
        if self.steps == 0:
            raise ValueError(f"{name} has {self.n} images, fewer than batch_size={batch_size} with drop_last=True")

    def _open_dataset(self, data, num_workers: int) -> None:
        """Read a map-style data set through a DataLoader (its worker seeds drawn from ``generator``)."""
        self.arrays = None
        self.dataset = data
        self.n = len(data)
        if self.n == 0:
            raise ValueError(f"{self.name} is empty (0 items)")
        first, _ = collate([data[0]])
        self.sample, self.is_uint8 = first, first.dtype == torch.uint8
        self.scale = 1 / 255 if self.is_uint8 else 1.0
        generator = self.generator
        sampler = torch.utils.data.RandomSampler(data, generator=generator) if self.shuffle else None
        loader_gen = torch.Generator()
        loader_gen.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)) if generator else 0)
        self.loader = torch.utils.data.DataLoader(
            data, batch_size=self.batch_size, sampler=sampler, shuffle=False, drop_last=self.drop_last,
            num_workers=num_workers, collate_fn=collate, pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0, generator=loader_gen)

    def _open_arrays(self, data, on_device: bool | None, need_labels: bool) -> None:
        """Hold array data as one tensor, on the training device when ``on_device`` (None: when it fits)."""
        arrays = ArrayData.from_any(data)
        if need_labels and arrays.labels is None:
            raise ValueError(f"{self.name} has no labels: pass (images, labels)")
        self.dataset = None
        self.n = len(arrays)
        self.is_uint8, self.scale = arrays.is_uint8, arrays.scale
        self.sample = arrays.images[:2]
        self.host = arrays
        if self.device.type != "cpu":
            if on_device is None:
                free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else 0
                on_device = arrays.nbytes < free / 4
            if on_device:
                arrays = arrays.to(self.device)
        self.arrays = arrays

    @property
    def channels(self) -> int:
        return self.sample.shape[1]

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std (:meth:`ArrayData.mean_std`): over every image of array data,
        over ``STATS_SAMPLE`` items drawn with a fixed seed from a map-style data set."""
        if self.arrays is not None:
            return self.host.mean_std()
        n = min(self.n, STATS_SAMPLE)
        g = torch.Generator()
        g.manual_seed(0)
        idx = torch.randperm(self.n, generator=g)[:n].tolist()
        x, _ = collate([self.dataset[i] for i in idx])
        return ArrayData(x.float() * self.scale if self.is_uint8 else x).mean_std()

    def fill_mean_std(self, mean, std) -> tuple:
        """``(mean, std)`` with whichever is None replaced by this source's own statistics."""
        if mean is None or std is None:
            own_mean, own_std = self.mean_std()
            mean = own_mean if mean is None else mean
            std = own_std if std is None else std
        return mean, std

    def labels_max_min(self) -> tuple[int, int] | None:
        if self.arrays is None or self.arrays.labels is None:
            return None
        y = self.host.labels
        return int(y.max()), int(y.min())

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        if self.arrays is None:
            yield from self._dataset_batches()
        else:
            yield from self._array_batches()

    def _dataset_batches(self):
        for i, (x, y) in enumerate(self.loader):
            if i >= self.steps:
                break
            if self.num_classes is not None:  # labels of a streamed data set, checked on the host
                _check_batch_labels(y, self.num_classes, self.name)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _array_batches(self):
        cuda = self.device.type == "cuda"
        images, labels = self.arrays.images, self.arrays.labels
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).to(images.device)
        else:
            order = None
        for i in range(self.steps):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, self.n)
            if order is None:
                x = images[lo:hi]
                y = None if labels is None else labels[lo:hi]
            else:
                idx = order[lo:hi]
                x = images[idx]
                y = None if labels is None else labels[idx]
            if x.device != self.device:
                if cuda:
                    x = x.pin_memory()
                    y = None if y is None else y.pin_memory()
                x = x.to(self.device, non_blocking=True)
                y = None if y is None else y.to(self.device, non_blocking=True)
            yield x, y


def check_labels(source: BatchSource, num_classes: int, name: str) -> None:
    """Refuse labels outside ``0 .. num_classes - 1``: all at once for array data, batch by batch
    (as they stream) for a map-style data set."""
    source.num_classes = num_classes
    max_min = source.labels_max_min()
    if max_min is None:
        return
    hi, lo = max_min
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{name} labels span {lo}..{hi} but the model has {num_classes} outputs (labels must be in "
            f"0..{num_classes - 1}); build the model with num_classes={max(hi + 1, num_classes)} or remove "
            "unlabeled (-1) images")


def _check_batch_labels(y: torch.Tensor, num_classes: int, name: str) -> None:
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{name} has a label {lo if lo < 0 else hi} outside 0..{num_classes - 1} "
                         f"(the model has {num_classes} outputs)")


# ----------------------------------------------------------------------------- augmentation


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop every image of ``x`` (B, C, H, W) from its zero-padded version at offsets
    ``(dy_b, dx_b)`` in ``0 .. 2 * padding`` and mirror it where ``flip_b``: one gather.

    ``out[b, c, i, j] = pad(x)[b, c, dy_b + i, dx_b + (W - 1 - j if flip_b else j)]``.
    Returns a contiguous (B, C, H, W) tensor of ``x``'s dtype.
    """
    b, c, h, w = x.shape
    p = padding
    if p > 0:
        x = F.pad(x, (p, p, p, p))
    hp, wp = h + 2 * p, w + 2 * p
    i = torch.arange(h, device=x.device)
    j = torch.arange(w, device=x.device)
    rows = dy.view(b, 1) + i  # (B, H)
    cols = torch.where(flip.view(b, 1), (w - 1) - j, j) + dx.view(b, 1)  # (B, W)
    index = (rows.unsqueeze(2) * wp + cols.unsqueeze(1)).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(x.reshape(b, c, hp * wp), 2, index).view(b, c, h, w)


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop of the zero-padded images and random horizontal flip (probability 1/2).

    Draws ``dy``, ``dx`` uniform in ``0 .. 2 * padding`` and the flips from ``generator`` (which
    must live on ``x``'s device), in this order, then calls :func:`crop_flip`.
    """
    b = x.shape[0]
    dev = x.device
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    if flip:
        flips = torch.rand(b, generator=generator, device=dev) < 0.5
    else:
        flips = torch.zeros(b, dtype=torch.bool, device=dev)
    return crop_flip(x, dy, dx, flips, padding)


# ----------------------------------------------------------------------------- preprocessing


def per_channel(v, channels: int, name: str) -> tuple[float, ...]:
    """A number, a sequence or a tensor as one float per channel (a single value is repeated)."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().reshape(-1).tolist()
    elif isinstance(v, (int, float, np.number)):
        v = [float(v)]
    v = [float(a) for a in v]
    if len(v) == 1:
        v = v * channels
    if len(v) != channels:
        raise ValueError(f"{name} has {len(v)} values but the images have {channels} channels")
    return tuple(v)


class Preprocess:
    """Stored batch -> model input: augment, normalise, resize, memory format (steps 1-4 of the
    module docstring). ``mean`` and ``std`` keep the per-channel values used."""

    def __init__(self, *, mean, std, channels: int, scale: float, device: torch.device,
                 input_size: int | None, channels_last: bool) -> None:
        self.mean = per_channel(mean, channels, "mean")
        self.std = per_channel(std, channels, "std")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        m = torch.tensor(self.mean, dtype=torch.float32)
        s = torch.tensor(self.std, dtype=torch.float32)
        self.scale = (scale / s).view(1, -1, 1, 1).to(device)
        self.shift = (-m / s).view(1, -1, 1, 1).to(device)
        self.input_size, self.channels_last = input_size, channels_last

    def __call__(self, x: torch.Tensor, *, augment: bool = False, padding: int = 0, flip: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if augment and (padding > 0 or flip):
            x = random_crop_flip(x, padding, flip, generator)
        x = torch.addcmul(self.shift, x.float(), self.scale)
        if self.input_size is not None and tuple(x.shape[2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
