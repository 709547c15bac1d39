"""The trainer: learning, reproducibility, resumption, schedules, losses, augmentation, I/O, errors.

Tiny models on 8 x 8 synthetic images, so every test takes a second or two on one CPU core.
"""

from __future__ import annotations

import json
import math
import os
import re
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnn
from cnn import train as T
from cnn.checkpoint import CheckpointError
from cnn.train import ArrayData, DivergedError, History, TrainConfig, evaluate, predict, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# quick defaults for the tests: small batches, no noise from the terminal
FAST = dict(batch_size=32, progress=False, threads=1)


def patterns(n: int, *, side: int = 8, channels: int | None = None, seed: int = 0):
    """A translation- and flip-invariant 4-class task: horizontal stripes, vertical stripes,
    checkerboard, flat; uint8 (N, H, W) (or (N, H, W, C)) with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    i, j = np.mgrid[:side, :side]
    proto = np.stack([(i % 2) * 1.0, (j % 2) * 1.0, ((i + j) % 2) * 1.0, np.full((side, side), 0.5)])
    x = proto[y] * 160 + rng.uniform(0, 90, (n, side, side))
    x = x.clip(0, 255).astype(np.uint8)
    if channels is not None:
        x = np.repeat(x[..., None], channels, axis=3)
    return x, y.astype(np.int64)


class TinyNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 4, dropout: float = 0.0, bn: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8) if bn else nn.Identity(), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(self.drop(self.features(x)))


class AuxOut(tuple):
    """A tuple subclass like the Inception models': [0] logits, [1:] auxiliary logits."""


class AuxNet(TinyNet):
    def __init__(self) -> None:
        super().__init__()
        self.aux1 = nn.Linear(16, 4)
        self.aux2 = nn.Linear(16, 4)

    def forward(self, x):
        h = self.features(x)
        if self.training:
            return AuxOut((self.fc(h), self.aux1(h), self.aux2(h)))
        return self.fc(h)


def tiny(seed: int = 0, **kw) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kw)


def params(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))


# ----------------------------------------------------------------------------- learning


def test_learns_a_separable_task():
    x, y = patterns(768)
    xv, yv = patterns(256, seed=1)
    model = tiny()
    h = train(model, (x, y), (xv, yv), TrainConfig(epochs=6, lr=0.1, **FAST))
    assert h.best_val_top1 > 0.95
    assert h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]
    m = evaluate(model, (xv, yv), mean=h.mean, std=h.std, device="cpu")
    assert m["top1"] == pytest.approx(h.best_val_top1)
    assert m["n"] == 256 and m["top5"] == 1.0 and m["k"] == 4  # top-k with k = num_classes < 5
    assert len(h.epochs) == 6 and h.best_epoch in range(1, 7)
    assert h.train_seconds == pytest.approx(h.epochs[-1]["train_seconds"])
    assert all(r["images_per_second"] > 0 for r in h.epochs)
    assert History.from_dict(json.loads(h.to_json())) == h


def test_same_seed_gives_identical_parameters():
    x, y = patterns(200)
    cfg = TrainConfig(epochs=2, **FAST)
    a, b, c = tiny(dropout=0.3), tiny(dropout=0.3), tiny(dropout=0.3)
    train(a, (x, y), config=cfg)
    train(b, (x, y), config=cfg)
    train(c, (x, y), config=TrainConfig(epochs=2, seed=1, **FAST))
    assert same(params(a), params(b))
    assert not same(params(a), params(c))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, precision):
    x, y = patterns(200)
    xv, yv = patterns(64, seed=1)
    ck = str(tmp_path / "run.pt")
    cfg = dict(epochs=4, schedule="onecycle", precision=precision, **FAST)
    straight = tiny(dropout=0.3)
    h_straight = train(straight, (x, y), (xv, yv), TrainConfig(**cfg, restore_best=False))

    first = tiny(dropout=0.3)
    h1 = train(first, (x, y), (xv, yv), TrainConfig(**cfg, restore_best=False, checkpoint=ck, stop_after=2))
    assert len(h1.epochs) == 2 and os.path.exists(ck)
    resumed = tiny(seed=123, dropout=0.3)  # a fresh, differently initialised model: weights come from the file
    h2 = train(resumed, (x, y), (xv, yv), TrainConfig(**cfg, restore_best=False, checkpoint=ck, resume=True))
    assert same(params(straight), params(resumed))
    assert [r["epoch"] for r in h2.epochs] == [1, 2, 3, 4]
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "lr"):
        assert [r[key] for r in h2.epochs] == [r[key] for r in h_straight.epochs], key
    assert h2.best_epoch == h_straight.best_epoch

    # a finished checkpoint resumes to nothing more; a changed schedule length is refused
    again = tiny(dropout=0.3)
    h3 = train(again, (x, y), (xv, yv), TrainConfig(**cfg, restore_best=False, checkpoint=ck, resume=True))
    assert len(h3.epochs) == 4 and same(params(again), params(straight))
    with pytest.raises(ValueError, match="epochs=4.*epochs=5"):
        train(tiny(), (x, y), config=TrainConfig(**{**cfg, "epochs": 5}, checkpoint=ck, resume=True))


def test_resume_extends_a_constant_schedule_run(tmp_path):
    """2 epochs, then the same call with epochs=4 and resume=True == 4 epochs straight (a schedule
    that does not depend on the run's length)."""
    x, y = patterns(160)
    ck = str(tmp_path / "c.pt")
    cfg = dict(schedule="constant", lr=0.02, precision="fp32", **FAST)
    straight = tiny(dropout=0.2)
    train(straight, (x, y), config=TrainConfig(epochs=4, **cfg))
    short = tiny(dropout=0.2)
    train(short, (x, y), config=TrainConfig(epochs=2, checkpoint=ck, **cfg))
    resumed = tiny(seed=7, dropout=0.2)
    h = train(resumed, (x, y), config=TrainConfig(epochs=4, checkpoint=ck, resume=True, **cfg))
    assert len(h.epochs) == 4 and same(params(straight), params(resumed))


def test_bf16_and_channels_last_on_cpu():
    x, y = patterns(96)
    model = tiny()
    h = train(model, (x, y), (x, y), TrainConfig(epochs=1, precision="bf16", channels_last=True, **FAST))
    assert math.isfinite(h.epochs[0]["train_loss"]) and h.epochs[0]["val_top1"] is not None
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model.features[0].weight.dtype == torch.float32  # autocast, not a bf16 model


def test_early_stopping_stops_and_restores_the_best_epoch():
    x, y = patterns(128)
    # a learning rate so small (and no BatchNorm statistics) that validation accuracy cannot improve
    cfg = dict(lr=1e-9, schedule="constant", augment=False, **FAST)
    model = tiny(bn=False)
    h = train(model, (x, y), (x, y), TrainConfig(epochs=20, early_stopping=2, **cfg))
    assert h.stopped_early and len(h.epochs) == 3 and h.best_epoch == 1
    one_epoch = tiny(bn=False)
    train(one_epoch, (x, y), config=TrainConfig(epochs=1, **cfg))
    assert same(params(model), params(one_epoch))  # the weights of epoch 1, not 3
    kept = tiny(bn=False)
    train(kept, (x, y), (x, y), TrainConfig(epochs=3, early_stopping=2, restore_best=False, **cfg))
    assert not same(params(kept), params(one_epoch))


def test_divergence_raises_a_clear_error():
    x, y = patterns(128)
    with pytest.raises(DivergedError, match=r"epoch 1 .*lower the learning rate"):
        train(tiny(), (x, y), config=TrainConfig(epochs=2, lr=1e25, schedule="constant", **FAST))


# ----------------------------------------------------------------------------- optimiser and schedules


def test_weight_decay_skips_biases_and_norm_weights():
    model = tiny()
    opt = T.build_optimizer(model, TrainConfig(weight_decay=1e-3))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-3 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["fc.weight", "features.0.weight", "features.3.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "fc.bias", "features.0.bias", "features.1.bias", "features.1.weight", "features.3.bias"]
    assert isinstance(opt, torch.optim.SGD) and decay["nesterov"] and decay["momentum"] == 0.9
    adamw = T.build_optimizer(model, TrainConfig(optimizer="adamw", lr=1e-3))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[1]["weight_decay"] == 0.0


def test_onecycle_matches_torch_onecycle():
    spe, epochs = 8, 3
    cfg = TrainConfig(epochs=epochs, lr=0.4, schedule="onecycle", pct_start=0.25)
    total = spe * epochs
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.4, total_steps=total, pct_start=0.25,
                                              cycle_momentum=False)
    theirs = []
    for _ in range(total):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    ours = [0.4 * T.lr_factor(cfg, s, spe) for s in range(total)]
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert ours[int(0.25 * total) - 1] == pytest.approx(0.4) and max(ours) == ours[5]  # peak at pct_start * T - 1
    assert ours[0] == pytest.approx(0.4 / 25) and ours[-1] == pytest.approx(0.4 / 25 / 1e4)


def test_cosine_with_warmup_and_step_schedules():
    spe = 10
    cos = TrainConfig(epochs=5, schedule="cosine", warmup_epochs=1.0)
    f = [T.lr_factor(cos, s, spe) for s in range(51)]
    assert f[0] == pytest.approx(0.1) and f[4] == pytest.approx(0.5) and f[9] == pytest.approx(1.0)  # (s+1)/W
    assert f[10] == pytest.approx(1.0) and f[30] == pytest.approx(0.5) and f[50] == pytest.approx(0.0, abs=1e-12)
    assert f[49] == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))
    half = TrainConfig(epochs=5, schedule="cosine", warmup_epochs=0.5)
    assert T.lr_factor(half, 4, spe) == pytest.approx(1.0) and T.lr_factor(half, 5, spe) == pytest.approx(1.0)
    step = TrainConfig(epochs=9, schedule="step", step_size=3, gamma=0.1)
    g = [T.lr_factor(step, s, spe) for s in range(90)]
    assert g[29] == 1.0 and g[30] == pytest.approx(0.1) and g[59] == pytest.approx(0.1) and g[60] == pytest.approx(0.01)
    assert T.lr_factor(TrainConfig(schedule="constant"), 123, spe) == 1.0


def test_the_trainer_applies_the_schedule_every_step():
    x, y = patterns(96)
    cfg = TrainConfig(epochs=3, lr=0.2, schedule="cosine", warmup_epochs=1, **FAST)  # 3 steps per epoch
    h = train(tiny(), (x, y), config=cfg)
    assert [r["lr"] for r in h.epochs] == pytest.approx([0.2 * T.lr_factor(cfg, 3 * e - 1, 3) for e in (1, 2, 3)])
    model = tiny()
    opt = T.build_optimizer(model, cfg)
    sched = T.build_scheduler(opt, cfg, 3)
    seen = []
    for _ in range(9):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.2 * T.lr_factor(cfg, s, 3) for s in range(9)])


# ----------------------------------------------------------------------------- losses


def test_label_smoothing_loss_matches_the_reference():
    torch.manual_seed(0)
    logits, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    loss, main = T.training_loss(logits, y, label_smoothing=0.1)
    logp = logits.log_softmax(1)
    ref = -(0.9 * logp.gather(1, y[:, None]).squeeze(1) + 0.1 * logp.mean(1)).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.1).item())
    assert main is logits

    # train() optimises and reports that loss: one full batch, no augmentation, a negligible step
    x, yy = patterns(64)
    model = tiny()
    data = ArrayData(x, yy)
    mean, std = data.mean_std()
    inputs = (data.images.float() / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    model.train()
    with torch.no_grad():
        expected = F.cross_entropy(model(inputs), data.labels, label_smoothing=0.1).item()
    h = train(model, (x, yy), config=TrainConfig(epochs=1, batch_size=64, lr=1e-12, augment=False,
                                                label_smoothing=0.1, precision="fp32", progress=False))
    assert h.epochs[0]["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_auxiliary_outputs_add_weighted_losses():
    torch.manual_seed(0)
    main, a1, a2 = torch.randn(3, 8, 4).unbind(0)
    y = torch.randint(0, 4, (8,))
    loss, m = T.training_loss(AuxOut((main, a1, a2)), y, aux_weight=0.3)
    ref = F.cross_entropy(main, y) + 0.3 * (F.cross_entropy(a1, y) + F.cross_entropy(a2, y))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6) and m is main

    x, yy = patterns(64)
    model = AuxNet()
    data = ArrayData(x, yy)
    mean, std = data.mean_std()
    inputs = (data.images.float() / 255 - mean[0]) / std[0]
    model.train()
    with torch.no_grad():
        expected = T.training_loss(model(inputs), data.labels)[0].item()
    h = train(model, (x, yy), (x, yy), TrainConfig(epochs=1, batch_size=64, lr=1e-12, augment=False,
                                                   precision="fp32", progress=False))
    assert h.epochs[0]["train_loss"] == pytest.approx(expected, rel=1e-5)
    assert h.epochs[0]["val_top1"] is not None  # eval mode: plain logits


def test_per_head_aux_weights_from_the_model_or_the_config():
    torch.manual_seed(1)
    main, a1, a2 = torch.randn(3, 8, 4).unbind(0)
    y = torch.randint(0, 4, (8,))
    loss, _ = T.training_loss(AuxOut((main, a1, a2)), y, aux_weight=(0.5, 0.1))
    ref = F.cross_entropy(main, y) + 0.5 * F.cross_entropy(a1, y) + 0.1 * F.cross_entropy(a2, y)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match="2 auxiliary outputs but 1 aux weights"):
        T.training_loss(AuxOut((main, a1, a2)), y, aux_weight=(0.5,))
    model = AuxNet()
    assert T.aux_weights(model, None) == 0.3  # no own weights: 0.3
    model.aux_weights = (0.5, 0.1)
    assert T.aux_weights(model, None) == (0.5, 0.1)  # the model's own (Inception v3: 0.4)
    assert T.aux_weights(model, 0.2) == 0.2  # the config wins

    x, yy = patterns(64)
    data = ArrayData(x, yy)
    mean, std = data.mean_std()
    inputs = (data.images.float() / 255 - mean[0]) / std[0]
    model.train()
    with torch.no_grad():
        expected = T.training_loss(model(inputs), data.labels, aux_weight=(0.5, 0.1))[0].item()
    h = train(model, (x, yy), config=TrainConfig(epochs=1, batch_size=64, lr=1e-12, augment=False,
                                                precision="fp32", progress=False))
    assert h.epochs[0]["train_loss"] == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- augmentation


def naive_crop_flip(x, dy, dx, flip, p):
    out = torch.empty_like(x)
    for b in range(len(x)):
        padded = F.pad(x[b], (p, p, p, p))
        h, w = x.shape[2:]
        crop = padded[:, dy[b]:dy[b] + h, dx[b]:dx[b] + w]
        out[b] = crop.flip(-1) if flip[b] else crop
    return out


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("p", [0, 1, 3])
def test_crop_flip_matches_a_per_image_loop(dtype, p):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(9, 3, 5, 7, generator=g) * 255).to(dtype)
    dy = torch.randint(0, 2 * p + 1, (9,), generator=g)
    dx = torch.randint(0, 2 * p + 1, (9,), generator=g)
    flip = torch.rand(9, generator=g) < 0.5
    assert torch.equal(T.crop_flip(x, dy, dx, flip, p), naive_crop_flip(x, dy, dx, flip, p))

    # random_crop_flip draws dy, dx, then the flips, from the generator it is given
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out = T.random_crop_flip(x, p, True, g1)
    dy = torch.randint(0, 2 * p + 1, (9,), generator=g2)
    dx = torch.randint(0, 2 * p + 1, (9,), generator=g2)
    flip = torch.rand(9, generator=g2) < 0.5
    assert torch.equal(out, naive_crop_flip(x, dy, dx, flip, p))
    assert torch.equal(T.random_crop_flip(x, 0, False, g1), x)


def test_resize_to_input_size():
    shapes = []

    class Probe(TinyNet):
        def forward(self, x):
            shapes.append(tuple(x.shape))
            return super().forward(x)

    x, y = patterns(40)
    torch.manual_seed(0)
    train(Probe(), (x, y), config=TrainConfig(epochs=1, input_size=12, **FAST))
    assert set(shapes) == {(2, 1, 12, 12), (32, 1, 12, 12), (8, 1, 12, 12)}  # probe, full and last batch


# ----------------------------------------------------------------------------- files


def test_json_log_has_one_line_per_epoch(tmp_path):
    x, y = patterns(64)
    log = tmp_path / "log.jsonl"
    train(tiny(), (x, y), (x, y), TrainConfig(epochs=2, log=str(log), **FAST))
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                "epoch_seconds", "train_seconds", "images_per_second"} <= set(r)
        assert 0 <= r["val_top1"] <= r["val_top5"] <= 1


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    x, y = patterns(64)
    ck = tmp_path / "ck" / "model.pt"
    h = train(tiny(), (x, y), (x, y), TrainConfig(epochs=2, checkpoint=str(ck), **FAST))
    assert os.listdir(ck.parent) == ["model.pt"]
    saved = torch.load(ck, weights_only=True)
    assert saved["epoch"] == 2 and saved["history"]["best_epoch"] == h.best_epoch
    assert {"model", "optimizer", "scheduler", "best_state", "rng", "config"} <= set(saved)
    before = ck.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train(tiny(), (x, y), config=TrainConfig(epochs=1, checkpoint=str(ck), **FAST))
    assert os.listdir(ck.parent) == ["model.pt"] and ck.read_bytes() == before


@pytest.mark.parametrize(("content", "match"), [
    (b"", "is empty"),
    (b"not a checkpoint at all", "is damaged or not a trainer checkpoint"),
    ("truncated", "is damaged or not a trainer checkpoint"),
    ("foreign", "is not a trainer checkpoint: it lacks model, optimizer"),
])
def test_an_empty_or_damaged_checkpoint_is_named_in_the_error(tmp_path, content, match):
    x, y = patterns(64)
    ck = tmp_path / "run.pt"
    cfg = dict(epochs=2, checkpoint=str(ck), **FAST)
    if content == "truncated":  # a real checkpoint cut in half
        train(tiny(), (x, y), config=TrainConfig(**cfg, stop_after=1))
        ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    elif content == "foreign":  # a valid torch file, but not one the trainer wrote
        torch.save({"weights": torch.zeros(3)}, ck)
    else:
        ck.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"checkpoint {re.escape(str(ck))} {match}.*delete it"):
        train(tiny(), (x, y), config=TrainConfig(**cfg, resume=True))
    assert issubclass(CheckpointError, ValueError)


def test_progress_bar_prints_one_summary_per_epoch(capsys):
    x, y = patterns(64)
    train(tiny(), (x, y), (x, y), TrainConfig(epochs=2, batch_size=32, threads=1, progress=True))
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all("loss " in line and "val_top1 " in line and line.endswith("img/s") for line in lines)
    assert "epoch 1/2" in captured.err  # the bar itself


# ----------------------------------------------------------------------------- inputs


def test_grey_colour_and_imageset_like_inputs():
    x, y = patterns(64)
    rgb, _ = patterns(64, channels=3)
    d = ArrayData(x, y)
    assert d.images.shape == (64, 1, 8, 8) and d.images.dtype == torch.uint8 and d.labels.dtype == torch.int64
    c = ArrayData.from_any(types.SimpleNamespace(images=rgb, labels=y))
    assert c.images.shape == (64, 3, 8, 8) and torch.equal(c.images[:, 2], torch.from_numpy(rgb[..., 2]))
    mean, std = c.mean_std()
    assert mean == pytest.approx([rgb.mean() / 255] * 3) and std == pytest.approx([rgb.std() / 255] * 3)
    f = ArrayData(torch.rand(4, 2, 5, 5, dtype=torch.float64), torch.tensor([0, 1, 0, 1]))
    assert f.images.dtype == torch.float32 and f.scale == 1.0 and f.channels == 2

    imageset = types.SimpleNamespace(images=rgb, labels=y)  # what experiments.datasets.load returns
    h = train(tiny(in_channels=3), imageset, (torch.from_numpy(rgb), torch.from_numpy(y)), TrainConfig(epochs=1, **FAST))
    assert len(h.mean) == 3 and h.num_classes == 4
    h = train(tiny(), (x, y), config=TrainConfig(epochs=1, **FAST))
    assert h.mean == pytest.approx((x.mean() / 255,))
    logits = predict(tiny(), x, mean=h.mean, std=h.std)  # a lone array: no labels needed
    assert logits.shape == (64, 4) and logits.dtype == torch.float32 and logits.device.type == "cpu"


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, x, y, as_numpy: bool = False):
        self.x, self.y, self.as_numpy = x, y, as_numpy

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if self.as_numpy:
            return self.x[i], int(self.y[i])  # uint8 (H, W): the ImageFolder kind of item
        return torch.from_numpy(self.x[i]).float().unsqueeze(0) / 255, int(self.y[i])


def test_dataset_path_with_num_workers_0():
    x, y = patterns(512)
    xv, yv = patterns(128, seed=1)
    model = tiny()
    h = train(model, PairDataset(x, y), PairDataset(xv, yv), TrainConfig(epochs=5, lr=0.1, num_workers=0, **FAST))
    assert h.best_val_top1 > 0.9
    # float items in [0, 1] and uint8 arrays give the same statistics and the same logits
    assert h.mean == pytest.approx(ArrayData(x).mean_std()[0], rel=1e-5)
    a = predict(model, PairDataset(xv, yv), mean=h.mean, std=h.std, batch_size=50)
    b = predict(model, PairDataset(xv, yv, as_numpy=True), mean=h.mean, std=h.std)
    c = predict(model, xv, mean=h.mean, std=h.std)
    assert torch.allclose(a, c, atol=1e-5) and torch.allclose(b, c, atol=1e-5)
    m = evaluate(model, PairDataset(xv, yv), mean=h.mean, std=h.std)
    assert m["top1"] == pytest.approx(h.best_val_top1)


def test_evaluate_top1_top5_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3, 4, 4)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 10))
    m = evaluate(model, (x, y), mean=0.0, std=1.0, batch_size=64, device="cpu", precision="fp32")
    logits = model(torch.from_numpy(x)).detach().numpy().astype(np.float64)
    rank = np.argsort(-logits, axis=1)
    top1 = np.mean(rank[:, 0] == y)
    top5 = np.mean((rank[:, :5] == y[:, None]).any(1))
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert m["top1"] == pytest.approx(top1) and m["top5"] == pytest.approx(top5)
    assert m["loss"] == pytest.approx(-logp[np.arange(300), y].mean(), rel=1e-5)
    assert m["n"] == 300 and m["ms_per_image"] > 0
    with pytest.warns(UserWarning, match="mean=history.mean"):
        evaluate(model, (x, y))


def test_alexnet_small_trains_a_step_on_28px_grey():
    model = cnn.get_model("alexnet_small", num_classes=10, in_channels=1)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8), rng.integers(0, 10, 16)
    before = params(model)
    h = train(model, (x, y), config=TrainConfig(epochs=1, batch_size=16, lr=0.01, flip=False, progress=False))
    assert len(h.epochs) == 1 and math.isfinite(h.epochs[0]["train_loss"])
    assert not same(before, params(model))


# ----------------------------------------------------------------------------- devices and precision


def conv_dtypes(model: TinyNet) -> list[torch.dtype]:
    """The dtypes of the first convolution's outputs, one per forward pass (bfloat16 under bf16 autocast)."""
    seen = []
    model.features[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    return seen


def test_resolve_device_and_explicit_precisions():
    assert T.resolve_device("cpu") == torch.device("cpu")
    assert T.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda:1' but CUDA is not available"):
            T.resolve_device("cuda:1")
    for device in ("cpu", torch.device("cpu"), "auto"):
        assert T.resolve_precision("fp32", device) == "fp32" and T.resolve_precision("bf16", device) == "bf16"
    with pytest.raises(ValueError, match=r"precision='fp16'.*'auto', 'fp32', 'bf16'"):
        T.resolve_precision("fp16", "cpu")
    assert TrainConfig().precision == "auto"


def test_cpu_bf16_support_is_read_from_the_cpuinfo_flags(tmp_path):
    def cpuinfo(name: str, flags: str) -> str:
        path = tmp_path / name
        path.write_text(f"processor\t: 0\nmodel name\t: A CPU\nflags\t\t: {flags}\nbugs\t\t: spectre_v1\n\n"
                        f"processor\t: 1\nflags\t\t: {flags}\n")
        return str(path)

    assert T.cpu_supports_bf16(cpuinfo("avx512", "fpu sse2 avx512f avx512_bf16 avx512_vnni"))
    assert T.cpu_supports_bf16(cpuinfo("amx", "fpu sse2 amx_bf16 amx_tile"))
    assert not T.cpu_supports_bf16(cpuinfo("none", "fpu sse2 avx512f avx512_fp16 avx512_vnni"))
    assert not T.cpu_supports_bf16(str(tmp_path / "missing"))
    proc = "/proc/cpuinfo"
    text = open(proc).read() if os.path.exists(proc) else ""
    assert T.cpu_supports_bf16() == bool(re.search(r"^flags\s*:.*\b(avx512_bf16|amx_bf16)\b", text, re.M))


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_where_the_cpu_has_native_bf16(monkeypatch, native):
    monkeypatch.setattr(T, "cpu_supports_bf16", lambda: native)
    expected = torch.bfloat16 if native else torch.float32
    assert T.resolve_precision("auto", "cpu") == T.resolve_precision("auto", torch.device("cpu")) == (
        "bf16" if native else "fp32")
    x, y = patterns(64)
    model = tiny()
    seen = conv_dtypes(model)
    h = train(model, (x, y), (x, y), TrainConfig(epochs=1, device="cpu", **FAST))
    assert len(seen) == 1 + 2 + 1 and set(seen) == {expected}  # probe, two training steps, validation
    seen.clear()
    evaluate(model, (x, y), mean=h.mean, std=h.std, device="cpu")
    predict(model, x, mean=h.mean, std=h.std, device="cpu")
    assert len(seen) == 4 and set(seen) == {expected}  # evaluate and predict: the same rule
    seen.clear()
    predict(model, x, mean=h.mean, std=h.std, device="cpu", precision="fp32")
    predict(model, x, mean=h.mean, std=h.std, device="cpu", precision="bf16")
    assert seen == [torch.float32] * 2 + [torch.bfloat16] * 2  # explicit values as given


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_cuda_asks_the_device(monkeypatch, native):
    asked = []
    monkeypatch.setattr(T, "_cuda_supports_bf16", lambda device: asked.append(device) or native)
    monkeypatch.setattr(T, "cpu_supports_bf16", lambda: not native)  # must not be consulted
    assert T.resolve_precision("auto", torch.device("cuda:0")) == ("bf16" if native else "fp32")
    assert asked == [torch.device("cuda:0")]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(optimizer="rmsprop"), r"optimizer='rmsprop'.*'sgd', 'adamw'"),
    (dict(schedule="poly"), r"schedule='poly'.*'onecycle'"),
    (dict(epochs=0), r"epochs=0.*integer >= 1"),
    (dict(batch_size=-4), r"batch_size=-4"),
    (dict(lr=0.0), r"lr=0.0"),
    (dict(lr=float("nan")), r"lr=nan"),
    (dict(momentum=1.5), r"momentum"),
    (dict(momentum=0.0), r"nesterov=False"),
    (dict(label_smoothing=1.0), r"label_smoothing"),
    (dict(precision="fp16"), r"precision='fp16'.*'bf16'"),
    (dict(device="tpu"), r"device='tpu'"),
    (dict(warmup_epochs=10, epochs=10, schedule="cosine"), r"warm-up must be shorter"),
    (dict(pct_start=1.0), r"pct_start"),
    (dict(resume=True), r"resume=True needs checkpoint="),
    (dict(early_stopping=0), r"early_stopping"),
])
def test_bad_config_values_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_bad_data_raises_helpful_errors():
    x, y = patterns(32)
    cfg = TrainConfig(epochs=1, **FAST)
    with pytest.raises(ValueError, match="32 images, 31 labels"):
        train(tiny(), (x, y[:31]), config=cfg)
    with pytest.raises(ValueError, match=r"labels span 1..6 but the model has 4 outputs.*num_classes=7"):
        train(tiny(), (x, np.where(y == 0, 6, y)), config=cfg)
    with pytest.raises(ValueError, match="unlabeled"):
        train(tiny(), (x, np.where(y == 0, -1, y)), config=cfg)
    with pytest.raises(ValueError, match="in_channels"):
        train(tiny(in_channels=3), (x, y), config=cfg)
    with pytest.raises(ValueError, match="uint8 .* or floating point"):
        train(tiny(), (x.astype(np.int32), y), config=cfg)
    with pytest.raises(ValueError, match="labels must be integers"):
        train(tiny(), (x, y.astype(np.float32)), config=cfg)
    with pytest.raises(ValueError, match="channels-first"):
        ArrayData(np.zeros((4, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="early_stopping needs val_data"):
        train(tiny(), (x, y), config=TrainConfig(epochs=1, early_stopping=2))
    with pytest.raises(ValueError, match="val_data has 3 channels"):
        train(tiny(), (x, y), (np.repeat(x[..., None], 3, 3), y), config=cfg)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        train(tiny(), (x, y), config=TrainConfig(epochs=1, batch_size=64, drop_last=True))
    with pytest.raises(ValueError, match="mean has 2 values"):
        train(tiny(), (x, y), config=cfg, mean=(0.1, 0.2), std=1.0)
    with pytest.raises(ValueError, match="no labels"):
        train(tiny(), x, config=cfg)


# ----------------------------------------------------------------------------- slow / CUDA


@pytest.mark.slow
def test_compiled_model_trains():
    x, y = patterns(256)
    model = tiny()
    h = train(model, (x, y), (x, y), TrainConfig(epochs=2, compile=True, **FAST))
    assert math.isfinite(h.epochs[-1]["train_loss"])


@cuda
def test_cuda_bf16_channels_last_and_resident_data():
    x, y = patterns(768)
    xv, yv = patterns(256, seed=1)
    model = tiny()
    cfg = TrainConfig(epochs=6, lr=0.1, batch_size=32, progress=False, device="cuda")
    h = train(model, (x, y), (xv, yv), cfg)
    assert h.best_val_top1 > 0.9
    assert next(model.parameters()).device.type == "cuda"
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    m = evaluate(model, (xv, yv), mean=h.mean, std=h.std)
    assert m["top1"] > 0.9
    logits = predict(model, xv, mean=h.mean, std=h.std)
    assert logits.device.type == "cpu" and logits.dtype == torch.float32


@cuda
def test_cuda_auto_precision_follows_native_bf16_support():
    native = torch.version.hip is not None or torch.cuda.get_device_capability()[0] >= 8  # Ampere and later
    assert T.resolve_precision("auto", "cuda") == ("bf16" if native else "fp32")


@cuda
def test_cuda_host_resident_and_dataset_paths_match_statistics():
    x, y = patterns(256)
    h1 = train(tiny(), (x, y), config=TrainConfig(epochs=2, data_on_device=False, device="cuda", **FAST))
    h2 = train(tiny(), PairDataset(x, y), config=TrainConfig(epochs=2, device="cuda", **FAST))
    assert all(math.isfinite(r["train_loss"]) for r in h1.epochs + h2.epochs)
    assert h1.mean == pytest.approx(h2.mean, rel=1e-5)
