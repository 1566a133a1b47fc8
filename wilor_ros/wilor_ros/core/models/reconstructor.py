"""Build the reconstructor network from a checkpoint and a MANO file, ready for inference."""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import weakref

import torch

from wilor_ros.core.hand.mano import load_mano
from wilor_ros.core.models.checkpoint import load_into_meta_model, read_checkpoint, refuse_non_finite
from wilor_ros.core.models.cpu_features import check_cpu_bf16
from wilor_ros.core.models.mano_layer import ManoLayer
from wilor_ros.core.models.wilor import HALF_DTYPES, ReconstructorConfig, WiLoR

LOG = logging.getLogger(__name__)

SUPPORTED_DTYPES = (torch.float32, *HALF_DTYPES)
# "memory": private (anonymous) copies of the weights, read once at start-up: nothing is paged in later,
# and the kernel cannot drop them under memory pressure (it can only swap them, which lock_weights
# prevents). "mmap": the weights stay pages of the checkpoint file, read on first use: the fastest start-up
# (tools, one-shot runs), but the kernel may evict clean file pages and re-read them mid-run.
WEIGHT_LOADING = ("memory", "mmap")


def load_reconstructor(
    checkpoint_path: str | os.PathLike[str],
    mano_path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    weight_loading: str = "memory",
    lock_weights: bool = False,
) -> WiLoR:
    """Load the WiLoR reconstructor in eval mode.

    Args:
        checkpoint_path: the official ``wilor_final.ckpt`` (full size) or a checkpoint written by this
            project (its stored config decides the size). Read without executing its pickle.
        mano_path: ``MANO_RIGHT.pkl`` (real or synthetic). Used for every ``mano.*`` entry the checkpoint
            lacks; entries the checkpoint has win, as in the official loader.
        device: "cpu", "cuda", "cuda:1", ...
        dtype: float32; bfloat16 on CUDA or on a CPU with bf16 matrix instructions (AMX / AVX512-BF16,
            see core/models/cpu_features.py); float16 on CUDA. In half precision only the ViT's patch
            embedding and attention/MLP layers run in ``dtype`` (``WiLoR.set_compute_dtype``: LayerNorm,
            softmax, the residual stream, 6D -> matrix, the refinement net and MANO stay float32).
        weight_loading: "memory" (private copies, for the live node) or "mmap" (pages of the checkpoint
            file, fastest start-up); only matters on the CPU. See ``WEIGHT_LOADING``.
        lock_weights: additionally ``mlock`` the CPU weights so they are never swapped out (needs
            CAP_IPC_LOCK or a large enough ``ulimit -l``; a RuntimeError says so otherwise).

    Returns:
        The ``WiLoR`` module; call it with B x 3 x 256 x 256 float32 crops. ``model.synthetic`` tells
        whether the checkpoint or the MANO model is a synthetic stand-in.

    Raises:
        FileNotFoundError for missing files, ValueError (CheckpointError) for a wrong or unsafe
        checkpoint or one holding a NaN/infinite tensor (named), ValueError for an unsupported
        dtype/device combination.
    """
    device = torch.device(device)
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}, got {dtype}")
    if weight_loading not in WEIGHT_LOADING:
        raise ValueError(f"weight_loading must be one of {WEIGHT_LOADING}, got {weight_loading!r}")
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError(
            f"{dtype} is supported on CUDA devices only (got device {device}); on the CPU use float32, or "
            "bfloat16 where the CPU has bf16 instructions"
        )
    if dtype == torch.bfloat16 and device.type == "cpu":
        check_cpu_bf16()

    contents = read_checkpoint(checkpoint_path)
    refuse_non_finite(contents.state_dict, f"{checkpoint_path} cannot be loaded")
    config = contents.config or ReconstructorConfig.full()
    mano_model = load_mano(mano_path)
    mano_layer = ManoLayer(mano_model.smplx_data_struct())
    file_template = mano_layer.v_template.clone()  # before checkpoint buffers replace it

    # Build the big parts on the meta device: no memory or time spent on weights that the checkpoint
    # replaces anyway (the full model has 640 M parameters).
    with torch.device("meta"):
        model = WiLoR(config, mano_layer)
    mano_from_file = load_into_meta_model(model, contents.state_dict, str(checkpoint_path))
    _report_mano_source(mano_from_file, contents.state_dict, file_template, mano_path)

    model.synthetic = contents.synthetic or mano_model.is_synthetic
    if contents.synthetic:
        LOG.warning(
            "%s is a SYNTHETIC checkpoint: outputs are not real hand reconstructions", checkpoint_path
        )
    if mano_model.is_synthetic:
        LOG.warning("%s is a SYNTHETIC MANO model: meshes are made-up hand-like geometry", mano_path)

    model = model.to(device)
    if dtype != torch.float32:
        model.set_compute_dtype(dtype)
    model.eval()
    model.requires_grad_(False)
    cpu_tensors = [t for t in itertools.chain(model.parameters(), model.buffers()) if t.device.type == "cpu"]
    if weight_loading == "memory":
        _copy_into_private_memory(cpu_tensors)
    if lock_weights:
        locked = lock_in_memory(cpu_tensors)
        LOG.info("locked %.0f MB of reconstructor weights in RAM (mlock)", locked / 2**20)
    LOG.info(
        "reconstructor loaded from %s (embed %d, depth %d) on %s in %s, weights %s",
        checkpoint_path,
        config.embed_dim,
        config.depth,
        device,
        dtype,
        weight_loading,
    )
    return model


@torch.no_grad()
def _copy_into_private_memory(tensors: list[torch.Tensor]) -> None:
    """Give every tensor its own anonymous copy (the checkpoint is read memory-mapped).

    One tensor at a time, so the peak is one extra tensor, not a second copy of all weights; the file's
    pages become plain page cache once the mapping is dropped.
    """
    for tensor in tensors:
        tensor.data = tensor.data.clone()


def lock_in_memory(tensors: list[torch.Tensor]) -> int:
    """``mlock`` the storages of CPU ``tensors`` (Linux/POSIX) -> bytes locked.

    Locked pages are resident and never swapped or evicted while the process lives, so no forward waits
    for a page-in. Raises RuntimeError (with what to change) when the kernel refuses.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "mlock"):
        raise RuntimeError("lock_weights needs mlock (Linux/POSIX); set lock_weights to false here")
    libc.mlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.munlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    storages = {t.untyped_storage().data_ptr(): (t.untyped_storage().nbytes(), t) for t in tensors}
    total = 0
    for address, (size, owner) in storages.items():
        if size == 0:
            continue
        if libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(size)) != 0:
            errno = ctypes.get_errno()
            raise RuntimeError(
                f"lock_weights: mlock of {size} bytes failed ({os.strerror(errno)}) after {total} bytes: the "
                "locked-memory limit is too low. Raise it (ulimit -l unlimited, LimitMEMLOCK=infinity in a "
                "systemd unit, --ulimit memlock=-1 in docker, or grant CAP_IPC_LOCK), or set lock_weights "
                "to false"
            )
        # unlock when the tensor goes (its weakref callbacks run before its memory is freed), or the
        # locked pages would stay locked under whatever reuses the memory: a node that reloads its
        # model would creep towards the locked-memory limit
        weakref.finalize(owner, libc.munlock, ctypes.c_void_p(address), ctypes.c_size_t(size))
        total += size
    return total


def _report_mano_source(
    mano_from_file: list[str],
    state_dict: dict[str, torch.Tensor],
    file_template: torch.Tensor,
    mano_path: str | os.PathLike[str],
) -> None:
    """Log where the MANO buffers came from; warn when the checkpoint's template differs from the file's."""
    if mano_from_file:
        LOG.info("MANO buffers %s taken from %s (not in the checkpoint)", mano_from_file, mano_path)
        return
    template = state_dict.get("mano.v_template")
    if template is not None and not torch.allclose(template.float(), file_template.float(), atol=1e-6):
        LOG.warning(
            "the checkpoint's MANO template differs from %s; using the checkpoint's MANO "
            "(the official loader's behaviour)",
            mano_path,
        )
