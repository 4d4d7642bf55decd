"""Training: fine-tune the classifier on an ImageFolder tree (`food/`, `other/`), or train the demo model on generated
photos (`--demo`). Images go through the same `decode` as in production, so training sees what serving sees.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from worker import decode, synthetic
from worker.model import FoodNet, ModelMetadata, build_model, save

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    metadata: ModelMetadata
    train_accuracy: float
    heldout_accuracy: float
    seconds: float


def load_folder(root: Path, classes: Sequence[str], size: int, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode every image under `root/<class>/`; unreadable files are skipped (and counted in the message)."""
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    skipped = 0
    for index, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise SystemExit(f"{root}: missing class folder {name}/ (expected {', '.join(f'{c}/' for c in classes)})")
        for file in sorted(folder.rglob("*")):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            result = decode.decode(file.read_bytes(), size, max_pixels)
            if result.pixels is None:
                skipped += 1
                continue
            arrays.append(result.pixels)
            labels.append(index)
    if not arrays:
        raise SystemExit(f"{root}: no readable images ({skipped} skipped)")
    return np.stack(arrays), np.asarray(labels, dtype=np.int64)


def generated_set(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` generated photos (half food), JPEG-encoded at varied sizes and decoded as in production."""
    jobs = [(i, size, seed) for i in range(count)]
    if count >= 200 and (os.cpu_count() or 1) > 1:
        # forkserver: the children need only Pillow and numpy, not a copy of this process and its threads.
        with ProcessPoolExecutor(mp_context=multiprocessing.get_context("forkserver")) as pool:
            pairs = list(pool.map(synthetic.decoded_sample, jobs, chunksize=16))
    else:
        pairs = [synthetic.decoded_sample(job) for job in jobs]
    return np.stack([p for p, _ in pairs]), np.asarray([label for _, label in pairs], dtype=np.int64)


def _to_tensor(arrays: np.ndarray, metadata: ModelMetadata) -> torch.Tensor:
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(metadata.mean).view(1, 3, 1, 1)
    std = torch.tensor(metadata.std).view(1, 3, 1, 1)
    return (x - mean) / std


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            correct += int((model(x[start : start + batch]).argmax(1) == y[start : start + batch]).sum())
    return correct / max(1, len(x))


def fit(
    model: FoodNet,
    metadata: ModelMetadata,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    heldout_fraction: float = 0.2,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[float, float]:
    """Train in place with AdamW + cosine decay and random flips; returns (train, held-out) accuracy."""
    torch.manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(images))
    n_held = max(1, int(len(images) * heldout_fraction))
    held, train = order[:n_held], order[n_held:]
    x_train, y_train = _to_tensor(images[train], metadata), torch.from_numpy(labels[train])
    x_held, y_held = _to_tensor(images[held], metadata), torch.from_numpy(labels[held])
    steps_per_epoch = -(-len(train) // batch_size)
    total = epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    step = 0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train))
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            xb, yb = x_train[idx], y_train[idx]
            flip = torch.rand(len(xb)) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if progress:
                progress(step, total, f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f}")
    recalibrate_batchnorm(model, x_train)
    return accuracy(model, x_train, y_train), accuracy(model, x_held, y_held)


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch: int = 128) -> None:
    """Recompute BatchNorm statistics as exact averages over the training set.

    After a short run the exponential running averages still lag the weights, and a model that is right on every
    training image in train mode can be at chance in eval mode; exact statistics remove that gap.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), batch):
            model(x[start : start + batch])
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


def _rich_progress(description: str) -> tuple[Progress, Callable[[], None]]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn()
    )
    task = bar.add_task(description, total=1, info="")
    bar.start()

    def update(step: int, total: int, info: str) -> None:
        bar.update(task, completed=step, total=total, info=info)

    return update, bar.stop


def train_demo(
    out_dir: Path | str,
    *,
    samples: int = 600,
    epochs: int = 4,
    input_size: int = 96,
    width: int = 16,
    seed: int = 7,
    show_progress: bool = True,
) -> TrainResult:
    """Train the demo model on generated photos and write it to `out_dir`; its version starts with `demo`."""
    start = time.perf_counter()
    metadata = ModelMetadata(
        version=f"demo-{time.strftime('%Y%m%d')}-s{seed}",
        input_size=input_size,
        width=width,
        extra={"data": f"{samples} generated photos, seed {seed}", "note": "demo model; not trained on real photos"},
    )
    images, labels = generated_set(samples, input_size, seed)
    model = build_model(metadata)
    update, stop = _rich_progress("training demo model") if show_progress else (None, lambda: None)
    try:
        train_acc, held_acc = fit(model, metadata, images, labels, epochs=epochs, seed=seed, progress=update)
    finally:
        stop()
    metadata = ModelMetadata(**{**metadata.__dict__, "extra": {**metadata.extra, "heldout_accuracy": held_acc}})
    save(model, metadata, out_dir)
    return TrainResult(Path(out_dir), metadata, train_acc, held_acc, time.perf_counter() - start)


def train_folder(
    data_dir: Path | str,
    out_dir: Path | str,
    *,
    epochs: int = 10,
    input_size: int = 128,
    width: int = 32,
    version: str | None = None,
    init_weights: Path | str | None = None,
    max_pixels: int = 40_000_000,
    show_progress: bool = True,
) -> TrainResult:
    """Fine-tune on `data_dir/food/` and `data_dir/other/` (starting from `init_weights` when given)."""
    from worker.model import load_local

    start = time.perf_counter()
    metadata = ModelMetadata(
        version=version or f"food-{time.strftime('%Y%m%d-%H%M%S')}", input_size=input_size, width=width
    )
    model = build_model(metadata)
    if init_weights is not None:
        base = load_local(init_weights, torch.device("cpu"))
        extra = {"base_version": base.metadata.version}
        metadata = ModelMetadata(**{**base.metadata.__dict__, "version": metadata.version, "extra": extra})
        model = base.model.float()
    images, labels = load_folder(Path(data_dir), metadata.classes, metadata.input_size, max_pixels)
    update, stop = _rich_progress("training") if show_progress else (None, lambda: None)
    try:
        train_acc, held_acc = fit(model, metadata, images, labels, epochs=epochs, progress=update)
    finally:
        stop()
    metadata = ModelMetadata(**{**metadata.__dict__, "extra": {**metadata.extra, "heldout_accuracy": held_acc}})
    save(model, metadata, out_dir)
    return TrainResult(Path(out_dir), metadata, train_acc, held_acc, time.perf_counter() - start)
