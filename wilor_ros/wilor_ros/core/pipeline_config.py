"""What shapes one pipeline: the model files (ModelPaths) and PipelineConfig, every field declared
once with its description, range and whether a running pipeline accepts a change (live)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wilor_ros.core.backends.registry import BACKEND_CHOICES, PRECISION_CHOICES, backend_entry, backends_where
from wilor_ros.core.config import check_settings, setting
from wilor_ros.core.files.model_files import (
    DETECTOR_ONNX,
    MANO_RIGHT,
    RECONSTRUCTOR_CKPT,
    RECONSTRUCTOR_ONNX,
)
from wilor_ros.core.hand.constants import DEFAULT_RESCALE_FACTOR

WEIGHT_LOADING_CHOICES = ("memory", "mmap")  # see core/models/reconstructor.py WEIGHT_LOADING


@dataclass
class ModelPaths:
    """Model files; relative names are looked up in ``model_dir``."""

    model_dir: str = setting(
        "models", doc="folder with the model files (relative names below are looked up in it)"
    )
    detector: str = setting(DETECTOR_ONNX.default_name, doc="hand detector ONNX (wilor-ros export)")
    checkpoint: str = setting(
        RECONSTRUCTOR_CKPT.default_name, doc="reconstructor checkpoint (pytorch backend)"
    )
    mano: str = setting(MANO_RIGHT.default_name, doc="MANO right-hand model (pytorch backend)")
    reconstructor_onnx: str = setting(
        RECONSTRUCTOR_ONNX.default_name, doc="reconstructor ONNX (onnxruntime/tensorrt backends)"
    )

    def resolve(self, name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() else Path(self.model_dir).expanduser() / path


@dataclass
class PipelineConfig:
    """Everything that shapes one pipeline (defaults: the official demo's settings, except the
    runtime). ``live`` fields can change on a running pipeline (``HandPipeline.reconfigure``)."""

    models: ModelPaths = field(default_factory=ModelPaths)
    # onnxruntime, not pytorch: the runtime path then needs no torch (the node, Jetson images);
    # `wilor-ros export` makes its file from the checkpoint once
    backend: str = setting("onnxruntime", doc="reconstructor runtime", choices=BACKEND_CHOICES)
    device: str = setting("cpu", doc="'cpu', 'cuda' or 'cuda:N'")
    precision: str = setting(
        "fp32",
        doc="network precision. pytorch: bf16 on CUDA or on a CPU with AMX / AVX512-BF16 (refused on other "
        "CPUs), fp16 on CUDA only (LayerNorm, softmax, 6D rotations and MANO stay float32); onnxruntime: "
        "int8 (ViT blocks dynamically quantized, file made on first use); tensorrt: fp16",
        choices=PRECISION_CHOICES,
    )
    detection_threshold: float = setting(
        0.3,
        doc="minimum detector confidence of a hand (the official demo's 0.3)",
        minimum=0.0,
        maximum=1.0,
        live=True,
    )
    nms_iou_threshold: float = setting(
        0.7,
        doc="IoU above which overlapping boxes of one side are suppressed (0.7: ultralytics' default, "
        "which the official demo uses)",
        minimum=0.01,
        maximum=1.0,
        live=True,
    )
    max_hands: int = setting(
        4,
        doc="most hands reconstructed per image: the highest scores, whatever the box source",
        minimum=1,
        maximum=32,
        live=True,
    )
    # Crop side = rescale * max(h, 4/3 w): the official demo passes 2.0 (its dataset class
    # defaults to 2.5; the parity goldens cover both).
    rescale_factor: float = setting(
        DEFAULT_RESCALE_FACTOR,
        doc="crop side = rescale_factor * box size (official demo 2.0, training 2.5)",
        minimum=1.0,
        maximum=4.0,
        live=True,
    )
    use_detector: bool = setting(
        True, doc="run the hand detector (False: only boxes given to predict() are used)"
    )
    device_preprocessing: bool = setting(
        False,
        doc="upload the frame once and crop/normalise on the device (core/image/device_preprocessing.py; "
        "within about one grey level of the exact CPU crop); pytorch/tensorrt backends",
    )
    weight_loading: str = setting(
        "memory",
        doc="pytorch backend: 'memory' copies the weights into RAM at start-up (no page-ins later: the "
        "live node); 'mmap' maps the checkpoint file (faster start-up, pages may be evicted and re-read)",
        choices=WEIGHT_LOADING_CHOICES,
    )
    lock_weights: bool = setting(
        False,
        doc="pytorch backend on CPU: mlock the weights so they are never swapped out (needs "
        "CAP_IPC_LOCK or a high enough 'ulimit -l')",
    )
    torch_compile: bool = setting(
        False,
        doc="pytorch backend: torch.compile (inductor) the network at start-up (minutes for the "
        "released model; needs a C++ compiler on CPU, Triton on CUDA)",
    )
    cuda_graphs: bool = setting(
        False, doc="pytorch backend on CUDA: replay one captured CUDA graph per batch size 1..max_hands"
    )

    def validate(self) -> None:
        check_settings(self)  # ranges and choices of every field
        runtime = backend_entry(self.backend)
        if self.precision not in runtime.precisions:
            raise ValueError(
                f"the {self.backend} backend runs precision {' | '.join(runtime.precisions)}, "
                f"not {self.precision!r}; use another precision or backend"
            )
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.device_preprocessing and not runtime.device_input:
            runtimes = backends_where(lambda entry: entry.device_input)
            raise ValueError(
                f"device_preprocessing needs a torch-tensor backend {runtimes}, got {self.backend!r}; "
                f"set device_preprocessing=False for {self.backend}"
            )
        for name in ("torch_compile", "cuda_graphs"):
            if getattr(self, name) and not runtime.torch_runtime:
                raise ValueError(
                    f"{name} applies to the {' / '.join(backends_where(lambda e: e.torch_runtime))} backend, "
                    f"got backend {self.backend!r}"
                )
        if self.cuda_graphs and not self.device.startswith("cuda"):
            raise ValueError(f"cuda_graphs needs a CUDA device, got device {self.device!r}")
