"""The fine-tuning loop: one code path for a single process and for DDP under torchrun.

Per optimiser step, for each of ``grad_accum`` micro-batches: forward (under autocast when enabled),
the summed SPEC 10.2 losses, backward; then, when a mocap prior is configured, the discriminator's
loss on the detached predictions against mocap samples (its own AdamW). After the micro-batches both
optimisers step. Data order and augmentation are a pure function of (seed, step, micro-batch, rank)
(datasets.StepBatchSampler), so a run resumed from a checkpoint continues exactly as if uninterrupted.

Checkpoints (``<out_dir>/checkpoints/step_NNNNNNN.ckpt`` and ``last.ckpt``) hold
``state_dict`` (the official LightningModule keys, float32: load_reconstructor and export accept them),
``wilor_ros`` (construction arguments, as core/models/checkpoint.py writes them), Lightning-style
``global_step`` / ``optimizer_states`` and ``training_state`` (scaler, RNG states, run config).

Distributed: when WORLD_SIZE > 1 (torchrun), the process group is initialised from the environment
(NCCL on CUDA, Gloo on CPU), the model is wrapped in DistributedDataParallel (the discriminator is kept
outside it and its gradients are averaged explicitly), each rank draws its own micro-batches, and only
rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from wilor_ros.core.config import config_to_dict
from wilor_ros.core.hand.mano import load_mano
from wilor_ros.core.models.checkpoint import PROJECT_KEY, STATE_DICT_KEY, atomic_torch_save, project_metadata
from wilor_ros.core.models.mano_layer import ManoLayer
from wilor_ros.core.models.wilor import ReconstructorConfig, WiLoR
from wilor_ros.tools.train.config import TrainConfig
from wilor_ros.tools.train.datasets import (
    Batch,
    HandDataset,
    MocapPrior,
    StepBatchSampler,
    collate,
    distinguish_labels,
    read_dataset,
)
from wilor_ros.tools.train.losses import discriminator_step_loss, generator_losses
from wilor_ros.tools.train.validation import BadSampleError, DataReport, SampleRef

LOG = logging.getLogger(__name__)

TRAINING_STATE_KEY = "training_state"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
DATA_REPORT = "data_report.json"  # bad samples of the run, beside the checkpoints
MAX_SAMPLES_IN_ERROR = 16
MAX_LOGGED_DRAWS = 10  # warnings for bad samples found while training; the summary lists them all
BYTES_PER_MB = 1024.0 * 1024.0
MOCAP_STREAM = 1  # extra seed word separating the mocap draw from the data draw of the same micro-batch


@dataclass
class DistInfo:
    """Process placement: rank/world size (1 when not distributed) and the device this process uses."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class TrainResult:
    """What ``train`` returns: the last step reached, the last checkpoint, per-step logged losses and
    the bad samples that were skipped (also in ``<out_dir>/checkpoints/data_report.json``)."""

    step: int
    last_checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    data_report: DataReport = field(default_factory=DataReport)


class TrainingDivergedError(RuntimeError):
    """A loss or gradient became NaN/infinite: training stops before the optimiser step."""


# ----------------------------------------------------------------------------------------- setup
def setup_distributed(device_setting: str) -> DistInfo:
    """Initialise torch.distributed from torchrun's env vars when WORLD_SIZE > 1; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_setting == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_setting)
        if device.type == "cuda" and world > 1:
            device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device={device_setting} but CUDA is not available; use cpu or auto")
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)  # MASTER_ADDR/PORT, RANK from torchrun
    return DistInfo(rank, world, local_rank, device)


def build_model(cfg: TrainConfig, checkpoint: str | None = None) -> WiLoR:
    """The model to train (float32, CPU): from ``checkpoint`` (resume), ``model.init_checkpoint`` or
    from scratch with the configured architecture (mean-parameter init)."""
    from wilor_ros.core.models.reconstructor import load_reconstructor
    from wilor_ros.tools.synthetic_checkpoint import synthetic_state_dict

    if not cfg.model.mano_path:
        raise ValueError("model.mano_path is required (MANO_RIGHT.pkl, real or synthetic)")
    source = checkpoint or cfg.model.init_checkpoint
    if source:
        model = load_reconstructor(source, cfg.model.mano_path, device="cpu")
    else:
        arch = ReconstructorConfig(
            embed_dim=cfg.model.embed_dim,
            depth=cfg.model.depth,
            num_heads=cfg.model.num_heads,
            refine_feat_dim=cfg.model.refine_feat_dim,
        )
        mano_model = load_mano(cfg.model.mano_path)
        layer = ManoLayer(mano_model.smplx_data_struct())
        model = WiLoR(arch, layer)
        model.load_state_dict(synthetic_state_dict(arch, layer, seed=cfg.model.init_seed))
        model.synthetic = mano_model.is_synthetic
        LOG.info("training from scratch: embed %d, depth %d", arch.embed_dim, arch.depth)
    model.requires_grad_(False)
    if cfg.optim.train_backbone:
        model.backbone.requires_grad_(True)
    if cfg.optim.train_refine_net:
        model.refine_net.requires_grad_(True)
    model.train()
    return model


def _set_train_mode(model: WiLoR, freeze_batchnorm: bool) -> None:
    model.train()
    model.mano.eval()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def trainable_parameters(model: WiLoR) -> list[nn.Parameter]:
    """Backbone and refinement-head parameters that require grad (never the discriminator or MANO)."""
    return [p for p in (*model.backbone.parameters(), *model.refine_net.parameters()) if p.requires_grad]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(
    path: Path,
    model: WiLoR,
    optimizers: list[torch.optim.Optimizer],
    scaler: torch.amp.GradScaler | None,
    step: int,
    cfg: TrainConfig,
) -> Path:
    """Write the checkpoint described in the module docstring atomically (temp file + rename)."""
    state = {
        k: (v.detach().float() if v.is_floating_point() else v.detach()).to("cpu", copy=True)
        for k, v in model.state_dict().items()
    }
    payload = {
        STATE_DICT_KEY: state,
        PROJECT_KEY: project_metadata(model.config, model.synthetic, trained_steps=int(step)),
        "global_step": int(step),
        "epoch": 0,
        "optimizer_states": [opt.state_dict() for opt in optimizers],
        TRAINING_STATE_KEY: {
            "step": int(step),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": _rng_state(),
            "config": config_to_dict(cfg),
        },
    }
    return atomic_torch_save(payload, path)


def load_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The optimiser/scaler/RNG part of a training checkpoint (read with weights_only=True)."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if TRAINING_STATE_KEY not in raw or "optimizer_states" not in raw:
        raise ValueError(
            f"{path} is not a training checkpoint of `wilor-ros train` (no {TRAINING_STATE_KEY}); "
            "use it as model.init_checkpoint instead of train.resume"
        )
    return raw


def _link_or_copy(source: Path, target: Path) -> None:
    """last.ckpt as a hard link to the newest step file (no second copy of a multi-GB file)."""
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def _rotate(folder: Path, keep: int) -> None:
    steps = sorted(folder.glob("step_*.ckpt"))
    for old in steps[: max(0, len(steps) - keep)]:
        old.unlink()


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("train.amp=fp16 needs a CUDA device; use bf16 (CPU autocast) or off")
    return torch.autocast(device_type=device.type, dtype=dtype)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / BYTES_PER_MB
    # ru_maxrss is kilobytes on Linux: peak resident memory of this process
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _agree_on_micro_batches(micro: list[Batch], dist: DistInfo, strict: bool) -> list[bool]:
    """Which micro-batches of a step to run: those holding a good sample (on every rank: under DDP a
    micro-batch runs on all ranks or on none, so that gradient synchronisation stays matched).

    Raises BadSampleError (strict) when a bad sample was drawn on this rank, ValueError when on another.
    """
    first_bad = next((bad for batch in micro for bad in batch.bad), None)
    empty = [len(batch) == 0 for batch in micro]
    strict_hit = strict and first_bad is not None
    if dist.enabled:
        flags = torch.tensor([*empty, strict_hit], dtype=torch.int32, device=dist.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        empty = [bool(flag) for flag in flags[:-1].tolist()]
        strict_hit = bool(flags[-1])
    if strict_hit:
        if first_bad is not None:
            raise BadSampleError(first_bad)
        raise ValueError("strict mode: another rank drew a bad sample (its error names it)")
    return [not is_empty for is_empty in empty]


def _non_finite_grads(named: dict[str, nn.Parameter]) -> list[str]:
    """Names of parameters whose gradient holds NaN/inf (one host sync when all are finite)."""
    items = [(name, p.grad) for name, p in named.items() if p.grad is not None]
    if not items or bool(torch.stack([torch.isfinite(g).all() for _, g in items]).all()):
        return []
    return [name for name, g in items if not bool(torch.isfinite(g).all())]


def _check_finite_step(
    done: int, problems: list[str], suspects: list[SampleRef], named: dict[str, nn.Parameter], dist: DistInfo
) -> None:
    """Raise TrainingDivergedError when this step produced a non-finite loss or gradient (on any rank),
    before the optimiser touches the weights: no NaN ever reaches a checkpoint."""
    if not problems:
        bad_grads = _non_finite_grads(named)
        if bad_grads:
            shown = ", ".join(bad_grads[:5]) + (
                f" (+{len(bad_grads) - 5} more)" if len(bad_grads) > 5 else ""
            )
            problems = [f"non-finite gradient of {shown} with finite losses"]
    diverged = bool(problems)
    if dist.enabled:
        flag = torch.tensor([int(diverged)], dtype=torch.int32, device=dist.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        diverged = bool(flag.item())
    if not diverged:
        return
    if not problems:
        problems = [f"non-finite loss or gradient on another rank (rank {dist.rank} saw none)"]
    unique = list(dict.fromkeys(suspects))  # drawn with replacement: a sample may come twice
    names = "; ".join(ref.describe() for ref in unique[:MAX_SAMPLES_IN_ERROR])
    if len(unique) > MAX_SAMPLES_IN_ERROR:
        names += f"; ... (+{len(unique) - MAX_SAMPLES_IN_ERROR} more)"
    raise TrainingDivergedError(
        f"training stopped at step {done}: {'; '.join(problems)}. Samples of that batch: {names}. "
        "The weights were not updated and no checkpoint was written for this step. Check these samples "
        "(`wilor-ros check-data`), lower optim.lr or set optim.grad_clip, then resume from the last "
        "checkpoint (train.resume)."
    )


def _gather_report(report: DataReport, dist: DistInfo, previous: DataReport | None) -> DataReport:
    """This run's bad samples of every rank (collective under DDP), plus those of the run it resumed."""
    merged = DataReport()
    if previous is not None:
        merged.merge(previous)
    if not dist.enabled:
        merged.merge(report)
        return merged
    gathered: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, report.to_dict())
    for part in gathered:
        merged.merge(DataReport.from_dict(part))
    return merged


def _load_previous_report(path: Path, start_step: int) -> DataReport | None:
    """The report written with the checkpoint a run resumes from (None when it belongs to another step)."""
    if start_step == 0 or not path.is_file():
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("step") != start_step:
        LOG.info("%s is not the report of step %d; the data report starts afresh", path, start_step)
        return None
    return DataReport.from_dict(data)


def _all_reduce_grads(params: list[nn.Parameter], world: int) -> None:
    """Average gradients over ranks (the discriminator lives outside DDP)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


# ----------------------------------------------------------------------------------------- training
def train(cfg: TrainConfig, max_steps: int | None = None) -> TrainResult:
    """Run (or resume) training as configured. ``max_steps`` stops early after that many optimiser
    steps in this call (the schedule length stays ``train.steps``; used to test exact resume).

    Raises ValueError for an unusable configuration (no datasets, bad paths, AMP mode and device).
    """
    tc = cfg.train
    if not cfg.data.datasets:
        raise ValueError("data.datasets is empty: add at least one dataset (see docs/training.md)")
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    dist = setup_distributed(tc.device)
    torch.manual_seed(tc.seed + dist.rank)
    random.seed(tc.seed + dist.rank)
    # numpy randomness comes only from np.random.default_rng streams seeded per step (no global state)

    model = build_model(cfg, tc.resume or None)
    mano_model = load_mano(cfg.model.mano_path)
    hands_mean = mano_model.hands_mean if cfg.data.freihand_pose_mean_relative else None
    report = DataReport()
    distinguish_labels(cfg.data.datasets)
    sources = [
        read_dataset(entry, cfg.data.rescale_factor, hands_mean, report, cfg.data.strict)
        for entry in cfg.data.datasets
    ]
    dataset = HandDataset(sources, cfg.augment)
    mocap = MocapPrior(cfg.data.mocap_path) if cfg.data.mocap_path else None
    use_adversarial = mocap is not None and cfg.loss.adversarial > 0

    model.to(dist.device)
    _set_train_mode(model, cfg.optim.freeze_batchnorm)
    params = trainable_parameters(model)
    if not params:
        raise ValueError("nothing to train: optim.train_backbone and optim.train_refine_net are both false")
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    disc = model.discriminator
    disc.requires_grad_(False)  # only its own step updates it; excluded from DDP
    disc_params = list(disc.parameters())
    disc_optimizer = torch.optim.AdamW(
        disc_params, lr=cfg.optim.disc_lr, weight_decay=cfg.optim.disc_weight_decay
    )
    scaler = torch.amp.GradScaler("cuda") if tc.amp == "fp16" else None

    start_step = 0
    if tc.resume:
        raw = load_training_state(tc.resume)
        optimizer.load_state_dict(raw["optimizer_states"][0])
        disc_optimizer.load_state_dict(raw["optimizer_states"][1])
        state = raw[TRAINING_STATE_KEY]
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        _restore_rng(state["rng"])
        start_step = int(state["step"])
        LOG.info("resumed from %s at step %d", tc.resume, start_step)
    end_step = tc.steps if max_steps is None else min(tc.steps, start_step + max_steps)

    net: nn.Module = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
        )

    sampler = StepBatchSampler(
        [len(s) for s in sources],
        [e.weight for e in cfg.data.datasets],
        tc.batch_size,
        tc.grad_accum,
        tc.seed,
        start_step,
        end_step,
        dist.rank,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        pin_memory=dist.device.type == "cuda",
    )

    out_dir = Path(tc.out_dir)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    writer = None
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        from torch.utils.tensorboard import SummaryWriter

        # step k is logged after the k-th optimiser step, so the checkpoint of start_step holds the
        # points of start_step: purge from the first step this run redoes
        writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step + 1)
        LOG.info(
            "training steps %d..%d, batch %d x accum %d x world %d = %d per step on %s",
            start_step,
            end_step,
            tc.batch_size,
            tc.grad_accum,
            dist.world_size,
            tc.batch_size * tc.grad_accum * dist.world_size,
            dist.device,
        )
    progress = None
    if dist.is_main and tc.progress:
        from tqdm import tqdm

        progress = tqdm(total=end_step, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    history: list[dict[str, float]] = []
    last_ckpt: Path | None = None
    report_path = ckpt_dir / DATA_REPORT
    previous_report = _load_previous_report(report_path, start_step) if dist.is_main else None
    merged_report = report
    named_params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    check_grads = scaler is None  # with fp16 the GradScaler itself skips steps with inf gradients
    logged_draws = 0
    batches = iter(loader)
    step = start_step
    finished = False
    try:
        for step in range(start_step, end_step):
            started = time.perf_counter()
            done = step + 1
            micro = [next(batches) for _ in range(tc.grad_accum)]
            for bad in (bad for batch in micro for bad in batch.bad):
                if report.add(bad, drawn=True) and logged_draws < MAX_LOGGED_DRAWS:
                    LOG.warning("step %d: skipping bad sample %s", done, bad.describe())
                    logged_draws += 1
            runs = _agree_on_micro_batches(micro, dist, cfg.data.strict)
            active = [(index, batch) for index, (batch, run) in enumerate(zip(micro, runs)) if run]
            sums: dict[str, float] = {}
            problems: list[str] = []
            suspects: list[SampleRef] = []
            for position, (micro_index, micro_batch) in enumerate(active):
                assert micro_batch.tensors is not None  # only micro-batches with good samples run
                batch = _to_device(micro_batch.tensors, dist.device)
                sync = (
                    net.no_sync() if dist.enabled and position < len(active) - 1 else contextlib.nullcontext()
                )
                with sync:
                    with _autocast(dist.device, tc.amp):
                        output = net(batch["img"])
                    losses = generator_losses(output, batch, cfg.loss, disc if use_adversarial else None)
                    if scaler is not None:
                        scaler.scale(losses.total).backward()
                    else:
                        losses.total.backward()
                terms = {name: float(value.detach()) for name, value in losses.terms.items()}
                terms["loss"] = float(losses.total.detach())
                if use_adversarial:
                    assert mocap is not None
                    rng = np.random.default_rng([tc.seed, step, micro_index, dist.rank, MOCAP_STREAM])
                    real_pose, real_betas = mocap.sample(batch["img"].shape[0], rng)
                    disc.requires_grad_(True)
                    loss_d = discriminator_step_loss(
                        disc,
                        output["pred_mano_params"]["hand_pose"],
                        output["pred_mano_params"]["betas"],
                        real_pose.to(dist.device),
                        real_betas.to(dist.device),
                        cfg.loss.adversarial,
                    )
                    loss_d.backward()
                    disc.requires_grad_(False)
                    terms["discriminator"] = float(loss_d.detach())
                non_finite = {name: value for name, value in terms.items() if not math.isfinite(value)}
                if non_finite:
                    values = ", ".join(f"{name}={value}" for name, value in non_finite.items())
                    problems.append(f"non-finite loss ({values}) in micro-batch {micro_index + 1}")
                    suspects.extend(micro_batch.samples)
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value
            if active:
                if not problems:
                    suspects = [ref for _, micro_batch in active for ref in micro_batch.samples]
                if scaler is not None:
                    scaler.unscale_(optimizer)
                _check_finite_step(done, problems, suspects, named_params if check_grads else {}, dist)
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if use_adversarial:
                    if dist.enabled:
                        _all_reduce_grads(disc_params, dist.world_size)
                    disc_optimizer.step()
                    disc_optimizer.zero_grad(set_to_none=True)
            else:
                LOG.warning(
                    "step %d: no optimiser step: every micro-batch held only bad samples%s",
                    done,
                    " (on this or another rank)" if dist.enabled else "",
                )

            record = {k: v / len(active) for k, v in sums.items()}
            record["step"] = float(done)
            record["good_samples"] = float(sum(len(b) for _, b in active))
            record["bad_samples_skipped"] = float(sum(len(b.bad) for b in micro))
            record["step_time_s"] = time.perf_counter() - started
            history.append(record)
            if dist.is_main:
                if progress is not None:
                    progress.update(1)
                    if "loss" in record:
                        progress.set_postfix(loss=f"{record['loss']:.4g}")
                if writer is not None and (done % tc.log_every == 0 or done == end_step):
                    for name, value in record.items():
                        if name != "step":
                            writer.add_scalar(f"train/{name}", value, done)
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], done)
                    writer.add_scalar("train/peak_memory_mb", _peak_memory_mb(dist.device), done)
            if done % tc.checkpoint_every == 0 or done == end_step:
                merged_report = _gather_report(report, dist, previous_report)  # collective under DDP
                if dist.is_main:
                    step_path = ckpt_dir / f"step_{done:07d}.ckpt"
                    save_training_checkpoint(step_path, model, [optimizer, disc_optimizer], scaler, done, cfg)
                    last_ckpt = ckpt_dir / LAST_CHECKPOINT
                    _link_or_copy(step_path, last_ckpt)
                    _rotate(ckpt_dir, tc.keep_checkpoints)
                    merged_report.write_json(report_path, step=done, checkpoint=str(step_path))
            step = done
        finished = True
    finally:
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        if dist.is_main:
            # the summary also when training stopped with an error (the rank's own findings then)
            summary = merged_report if finished else report
            print(summary.format(), file=sys.stderr)
        if dist.enabled:
            torch.distributed.barrier()
    if dist.is_main:
        print(
            f"trained to step {step}; peak memory {_peak_memory_mb(dist.device):.0f} MB; "
            f"checkpoint {last_ckpt}; data report {report_path if last_ckpt else None}",
            file=sys.stderr,
        )
    return TrainResult(step=step, last_checkpoint=last_ckpt, history=history, data_report=merged_report)
