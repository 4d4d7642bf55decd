"""The food / not-food classifier: a compact CNN in plain PyTorch, its weights + metadata format, and batch inference.

A model directory (local, or an S3 prefix) holds `metadata.json` and either `model.safetensors` or `model.pt`
(a state dict read with `torch.load(weights_only=True)`, so no pickled code ever runs).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import nn

METADATA_FILE = "metadata.json"
WEIGHTS_FILES = ("model.safetensors", "model.pt")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(RuntimeError):
    """No usable model at the given location; the message says what is missing or wrong."""


@dataclass(frozen=True)
class ModelMetadata:
    version: str
    classes: tuple[str, ...] = ("food", "other")
    input_size: int = 128
    threshold: float = 0.5
    positive_class: str = "food"
    width: int = 32
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        raw = json.loads(text)
        if not isinstance(raw, dict) or not isinstance(raw.get("version"), str):
            raise ModelError(f"{METADATA_FILE}: expected an object with a string 'version'")
        classes = tuple(raw.get("classes", ("food", "other")))
        positive = raw.get("positive_class", "food")
        if len(classes) < 2 or positive not in classes:
            raise ModelError(
                f"{METADATA_FILE}: 'classes' {list(classes)} must list at least 2 and include {positive!r}"
            )
        return cls(
            version=raw["version"],
            classes=classes,
            input_size=int(raw.get("input_size", 128)),
            threshold=float(raw.get("threshold", 0.5)),
            positive_class=positive,
            width=int(raw.get("width", 32)),
            mean=tuple(raw.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(raw.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
            extra=dict(raw.get("extra", {})),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _separable(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class FoodNet(nn.Module):
    """MobileNet-style CNN: a strided stem and depthwise-separable blocks, global pooling, one linear layer.

    At 128x128 it costs about 25 MFLOPs per image, so even a CPU keeps up with decoding; on a GPU it leaves the
    whole budget to the decoders.
    """

    def __init__(self, num_classes: int = 2, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            _separable(w, 2 * w, 2),
            _separable(2 * w, 2 * w, 1),
            _separable(2 * w, 4 * w, 2),
            _separable(4 * w, 4 * w, 1),
            _separable(4 * w, 8 * w, 2),
            _separable(8 * w, 8 * w, 2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        result: torch.Tensor = self.head(self.dropout(x))
        return result


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda` without a GPU is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("MLBASE_DEVICE=cuda but no CUDA device is available")
    return torch.device(name)


def share_cpu_with_decoders(device: torch.device, decode_workers: int) -> None:
    """The decode processes fill the cores; torch threads in this process would only take cores from them.

    On a CPU-only host the model gets what the decoders leave. On a GPU host this process only stacks batches and
    copies them to the device, and idle intra-op threads that spin after each small CPU op would steal cores from the
    decoders, so one thread is enough.
    """
    spare = max(1, (os.cpu_count() or 1) - decode_workers)
    torch.set_num_threads(spare if device.type == "cpu" else 1)


Capability = Callable[[torch.device], tuple[int, int]]


def precision_for(device: torch.device, capability: Capability | None = None) -> torch.dtype:
    """The model's dtype on `device`: bf16 where the GPU computes it natively, fp16 on older GPUs, fp32 on CPU.

    bf16 needs compute capability 8.0 (Ampere: A10G, A100, L4, H100/H200). The g4dn fallback's T4 (7.5) only
    emulates it, several times slower than its fp16 tensor cores; `torch.cuda.is_bf16_supported()` counts that
    emulation as support, so the capability is asked directly. `capability` is the seam tests use to fake a GPU.
    """
    if device.type != "cuda":
        return torch.float32
    major, _minor = (capability or torch.cuda.get_device_capability)(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


class Classifier:
    """A loaded model on one device: uint8 NHWC batches in, one `Prediction` per image out."""

    def __init__(
        self, model: FoodNet, metadata: ModelMetadata, device: torch.device, capability: Capability | None = None
    ) -> None:
        self.metadata = metadata
        self.device = device
        # Half precision + channels_last is the fast path on tensor cores; CPU stays in float32 for exactness.
        self.dtype = precision_for(device, capability)
        memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.memory_format = memory_format
        self.model = model.to(device=device, dtype=self.dtype).to(memory_format=memory_format).eval()  # type: ignore[call-overload]
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(metadata.mean, device=device).view(shape) * 255.0
        self._std = torch.tensor(metadata.std, device=device).view(shape) * 255.0
        self._positive = metadata.classes.index(metadata.positive_class)
        # cuDNN plans each new input shape (hundreds of milliseconds of CPU for this network), and batches closed by
        # the timeout come in every size: on the GPU they are padded to a few fixed sizes instead.
        self.pad_batches = device.type == "cuda"

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def input_size(self) -> int:
        return self.metadata.input_size

    def to_input(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 NHWC (CPU array or tensor on any device) to the normalized NCHW tensor the model expects."""
        # Arrays decoded from shared or read-only buffers are copied once; torch must not alias read-only memory.
        tensor = torch.from_numpy(np.require(batch, requirements=["W"])) if isinstance(batch, np.ndarray) else batch
        # A no-op when the batch is already there (photos decoded by nvJPEG live on the GPU as "cuda:0", which
        # compares unequal to the classifier's plain "cuda", so the devices are not compared here).
        tensor = tensor.to(self.device)
        x = tensor.permute(0, 3, 1, 2).float()
        x = (x - self._mean) / self._std
        return x.to(dtype=self.dtype).contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = self.to_input(batch)
        count = x.shape[0]
        padded = batch_bucket(count) if self.pad_batches else count
        if padded > count:
            zeros = x.new_zeros((padded - count, *x.shape[1:]))
            x = torch.cat([x, zeros]).contiguous(memory_format=self.memory_format)
        logits = self.model(x)[:count]
        return torch.softmax(logits.float(), dim=1).cpu()

    def warm_up(self, max_batch: int) -> None:
        """Run every padded batch shape once, so no photo waits for the GPU libraries to plan a new shape."""
        size = self.input_size
        largest = batch_bucket(max_batch) if self.pad_batches else 1
        for bucket in (1 << k for k in range(largest.bit_length())):  # 1, 2, 4, ... largest
            self.probabilities(np.zeros((bucket, size, size, 3), dtype=np.uint8))

    def predict(self, batch: np.ndarray | torch.Tensor) -> list[Prediction]:
        if len(batch) == 0:
            return []
        probs = self.probabilities(batch)[:, self._positive].tolist()
        negative = next(c for c in self.metadata.classes if c != self.metadata.positive_class)
        out = []
        for p in probs:
            if p >= self.metadata.threshold:
                out.append(Prediction(self.metadata.positive_class, round(float(p), 6)))
            else:
                out.append(Prediction(negative, round(1.0 - float(p), 6)))
        return out


def batch_bucket(count: int) -> int:
    """The padded batch size for `count` images: the next power of two (1, 2, 4, ... 256, 512, ...)."""
    return 1 << max(0, count - 1).bit_length()


def build_model(metadata: ModelMetadata) -> FoodNet:
    return FoodNet(num_classes=len(metadata.classes), width=metadata.width)


def state_dict_from_bytes(name: str, data: bytes) -> dict[str, torch.Tensor]:
    if name.endswith(".safetensors"):
        return load_safetensors_bytes(data)
    loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict):
        raise ModelError(f"{name}: expected a state dict")
    return loaded


def load_from_files(files: dict[str, bytes], where: str, device: torch.device) -> Classifier:
    """Build a classifier from the bytes of `metadata.json` and one weights file found at `where`."""
    if METADATA_FILE not in files:
        raise ModelError(f"{where}: no {METADATA_FILE}")
    weights_name = next((n for n in WEIGHTS_FILES if n in files), None)
    if weights_name is None:
        raise ModelError(f"{where}: no weights ({' or '.join(WEIGHTS_FILES)})")
    try:
        metadata = ModelMetadata.from_json(files[METADATA_FILE].decode())
        model = build_model(metadata)
        model.load_state_dict(state_dict_from_bytes(weights_name, files[weights_name]))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{where}: unusable weights or metadata ({type(exc).__name__}: {exc})") from None
    return Classifier(model, metadata, device)


def load_local(directory: Path | str, device: torch.device) -> Classifier:
    path = Path(directory)
    if not path.is_dir():
        raise ModelError(f"{path}: not a directory with {METADATA_FILE} and model weights")
    files = {n: (path / n).read_bytes() for n in (METADATA_FILE, *WEIGHTS_FILES) if (path / n).is_file()}
    return load_from_files(files, str(path), device)


def load_s3(uri: str, s3: Any, device: torch.device) -> Classifier:
    """Read `metadata.json` and the weights from `s3://bucket/prefix/` (the task role grants read on the prefix)."""
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    files: dict[str, bytes] = {}
    for name in (METADATA_FILE, *WEIGHTS_FILES):
        try:
            files[name] = s3.get_object(Bucket=bucket, Key=prefix + name)["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue
        if name in WEIGHTS_FILES:
            break
    return load_from_files(files, uri, device)


def load_classifier(uri: str, device: torch.device, s3: Any = None) -> Classifier:
    if uri.startswith("s3://"):
        if s3 is None:
            raise ModelError(f"{uri}: an S3 client is needed to load this model")
        return load_s3(uri, s3, device)
    return load_local(uri, device)


def save(model: FoodNet, metadata: ModelMetadata, directory: Path | str) -> Path:
    """Write `model.safetensors` + `metadata.json` into `directory` (created if needed)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    # BatchNorm's integer counter must stay an integer tensor.
    state.update({k: v.detach().cpu() for k, v in model.state_dict().items() if not v.is_floating_point()})
    save_file(state, str(path / "model.safetensors"))
    (path / METADATA_FILE).write_text(metadata.to_json() + "\n")
    return path
