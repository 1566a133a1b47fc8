"""Typed training configuration (loaded with core/config.py: YAML + ``key.sub=value`` overrides).

Defaults reproduce the released WiLoR training setup (SPEC 10, ``model_config.yaml``): AdamW lr 1e-5,
weight decay 1e-4 for the model and the discriminator, batch 32, loss weights of SPEC 10.2, augmentation
of ``DATASETS.CONFIG``. Differences from the official trainer are explicit options:
``optim.train_refine_net`` (official: the refinement head is not handed to the optimiser; here it is
trained by default) and the adversarial term, which runs only when a mocap prior is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wilor_ros.core.hand.constants import DEFAULT_RESCALE_FACTOR

DATASET_KINDS = ("freihand", "webdataset", "jsonl")
AMP_MODES = ("off", "fp16", "bf16")
# The official dataset class crops with rescale 2.5 (SPEC 2.1) and the demo with 2.0; training data of
# the released model went through the dataset class.
TRAIN_RESCALE_FACTOR = 2.5


@dataclass
class DatasetEntry:
    """One training or evaluation source.

    kind: "freihand" (folder with training/rgb and training_*.json), "webdataset" (path = a .tar shard,
    a folder of shards or a glob), "jsonl" (our own index format, docs/training.md).
    weight: relative sampling weight when several datasets are mixed (normalised over the list).
    name: label in logs and reports (default: the kind and file name).
    split: FreiHAND only: "training" or "evaluation" (file prefix).
    """

    kind: str = "jsonl"
    path: str = ""
    weight: float = 1.0
    name: str = ""
    split: str = "training"

    def validate(self) -> None:
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"dataset kind must be one of {DATASET_KINDS}, got {self.kind!r}")
        if not self.path:
            raise ValueError(f"dataset of kind {self.kind!r} needs a path")
        if not self.weight > 0:
            raise ValueError(f"dataset weight must be positive, got {self.weight}")

    @property
    def label(self) -> str:
        from pathlib import Path

        return self.name or f"{self.kind}:{Path(self.path).name}"


@dataclass
class AugmentConfig:
    """Official ``DATASETS.CONFIG`` values (HaMeR/WiLoR ``do_augmentation``), our implementation.

    scale: box scale jitter, s = 1 + clip(N(0,1), -1, 1) * scale_factor.
    rotation: degrees, clip(N(0,1), -2, 2) * rot_factor with probability rot_rate.
    translation: box-size fraction, clip(N(0,1), -1, 1) * trans_factor per axis.
    colour: per-channel gain uniform in [1 - colour_scale, 1 + colour_scale].
    flip: random horizontal flip (off in the released config: left/right hands are distinct).
    extreme_crop_rate: probability of cropping tightly to a random subset of the fingers (our hand
    version of HaMeR's body "extreme cropping").
    """

    enabled: bool = True
    scale_factor: float = 0.3
    rot_factor: float = 30.0
    rot_rate: float = 0.6
    trans_factor: float = 0.02
    colour_scale: float = 0.2
    flip: bool = False
    flip_rate: float = 0.5
    extreme_crop_rate: float = 0.1

    def validate(self) -> None:
        for name in ("scale_factor", "rot_factor", "trans_factor", "colour_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        if self.scale_factor >= 1:
            raise ValueError("augment.scale_factor must be < 1 (the crop would collapse)")
        for name in ("rot_rate", "flip_rate", "extreme_crop_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment.{name} must be a probability in [0, 1]")


@dataclass
class LossWeights:
    """SPEC 10.2 weights (``LOSS_WEIGHTS`` of the released config). Each term is a sum, not a mean."""

    keypoints_3d: float = 0.05
    keypoints_2d: float = 0.01
    global_orient: float = 0.001
    hand_pose: float = 0.001
    betas: float = 0.0005
    adversarial: float = 0.0005


@dataclass
class ModelSection:
    """Where the weights come from.

    init_checkpoint: official ``wilor_final.ckpt`` or a project checkpoint; empty = from scratch with
    the architecture below (mean-parameter init, as the synthetic checkpoints).
    mano_path: MANO_RIGHT.pkl (real or synthetic).
    embed_dim/depth/num_heads/refine_feat_dim: architecture for from-scratch training only (defaults:
    the released model); a checkpoint brings its own.
    """

    init_checkpoint: str = ""
    mano_path: str = ""
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    refine_feat_dim: int = 1280
    init_seed: int = 0

    def validate(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"model.embed_dim {self.embed_dim} is not a multiple of {self.num_heads} heads")


@dataclass
class DataSection:
    """Training data. mocap_path: npz with hand_pose (N, 45) axis-angle (flat-hand convention, MANO joint
    order) and betas (N, 10): the discriminator's "real" samples (official: FREIHAND-MOCAP)."""

    datasets: list[DatasetEntry] = field(default_factory=list)
    mocap_path: str = ""
    rescale_factor: float = TRAIN_RESCALE_FACTOR
    num_workers: int = 2
    # FreiHAND's 45 articulation values: True = relative to MANO's mean hand (smplx flat_hand_mean=False,
    # our reading of FreiHAND's tooling); they are converted to the flat-hand convention WiLoR predicts.
    freihand_pose_mean_relative: bool = True
    # bad samples (non-finite, out of range, missing/corrupt image) are skipped, counted and reported;
    # strict: the first one stops the run with its name instead (`wilor-ros train --strict`)
    strict: bool = False

    def validate(self) -> None:
        if not self.rescale_factor > 0:
            raise ValueError(f"data.rescale_factor must be positive, got {self.rescale_factor}")
        if self.num_workers < 0:
            raise ValueError("data.num_workers must be >= 0")


@dataclass
class OptimSection:
    """AdamW for the model (backbone + refinement head) and for the discriminator (SPEC 10.3)."""

    lr: float = 1e-5
    weight_decay: float = 1e-4
    disc_lr: float = 1e-5
    disc_weight_decay: float = 1e-4
    train_refine_net: bool = True  # official: False (only backbone parameters reach the optimiser)
    train_backbone: bool = True
    grad_clip: float = 0.0  # 0 = none, as the released config
    freeze_batchnorm: bool = False  # keep the refinement head's BN statistics (useful for tiny batches)


@dataclass
class TrainSection:
    """Schedule and bookkeeping.

    batch_size: per process and micro-batch; grad_accum micro-batches make one optimiser step; the
    effective batch is batch_size * grad_accum * world_size.
    amp: "off", "fp16" (CUDA, with a GradScaler) or "bf16" (CUDA or CPU autocast).
    """

    out_dir: str = "runs/finetune"
    steps: int = 10000
    batch_size: int = 32
    grad_accum: int = 1
    amp: str | bool = "off"  # YAML reads a bare `off` as false: accepted and normalised to "off"
    device: str = "auto"  # auto = cuda if available else cpu; DDP uses cuda:LOCAL_RANK
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    resume: str = ""  # a training checkpoint (last.ckpt) to continue from exactly
    progress: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on CUDA)
    num_threads: int = 0  # torch CPU threads (0 = torch default)

    def validate(self) -> None:
        if self.amp is False:
            self.amp = "off"
        if self.amp not in AMP_MODES:
            raise ValueError(f"train.amp must be one of {AMP_MODES}, got {self.amp!r}")
        for name in ("steps", "batch_size", "grad_accum", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class TrainConfig:
    """Everything ``wilor-ros train`` reads (see config/finetune_example.yaml)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)


@dataclass
class EvalConfig:
    """``wilor-ros eval``: a checkpoint, a MANO file and datasets (no augmentation)."""

    checkpoint: str = ""
    mano_path: str = ""
    datasets: list[DatasetEntry] = field(default_factory=list)
    batch_size: int = 16
    device: str = "auto"
    rescale_factor: float = TRAIN_RESCALE_FACTOR
    pck_2d_ratio: float = 0.05  # 2D PCK threshold as a fraction of max(box w, h)
    freihand_pose_mean_relative: bool = True
    max_samples: int = 0  # 0 = all
    out_json: str = ""
    strict: bool = False  # the first bad sample is an error (default: skipped, counted, reported)


__all__ = [
    "AMP_MODES",
    "DATASET_KINDS",
    "DEFAULT_RESCALE_FACTOR",
    "AugmentConfig",
    "DataSection",
    "DatasetEntry",
    "EvalConfig",
    "LossWeights",
    "ModelSection",
    "OptimSection",
    "TrainConfig",
    "TrainSection",
]
