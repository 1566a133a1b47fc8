"""Reading and writing reconstructor checkpoints safely.

Official ``wilor_final.ckpt`` (SPEC 8): a PyTorch Lightning checkpoint; the weights are
``ckpt["state_dict"]`` with the keys of checkpoint_manifest.json. Lightning also stores bookkeeping and,
most likely, the training yacs ``CfgNode`` under ``hyper_parameters``, which
``torch.load(weights_only=True)`` refuses. We never execute a checkpoint's pickle: it is read first with
``weights_only=True``; if that refuses the file, it is read again with the restricted unpickler of
``core/files/safe_pickle.py`` and the checkpoint allowlist: only allowlisted globals (tensor rebuilders, plain
containers, dtypes) are resolved and config classes (yacs ``CfgNode``, Lightning ``AttributeDict``) become
an inert dict. Everything else is refused.

Checkpoints written by this project carry ``ckpt["wilor_ros"]`` = {"format_version", "package_version",
"config" (ReconstructorConfig as a dict), "synthetic"}; official checkpoints have no such entry and are
the full-size model.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import importlib.metadata
import logging
import os
import pathlib
import pickle
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from wilor_ros.core.files.safe_pickle import (
    NUMPY_GLOBALS,
    Allowlist,
    GlobalName,
    RestrictedUnpickler,
    StandIn,
    as_pickle_module,
    numpy_dtype_class,
)
from wilor_ros.core.models.wilor import ReconstructorConfig, WiLoR

LOG = logging.getLogger(__name__)

PROJECT_KEY = "wilor_ros"  # our metadata entry in checkpoints written by this project
CHECKPOINT_FORMAT_VERSION = 1
STATE_DICT_KEY = "state_dict"

# Entries inference never reads (SPEC 8): training-only discriminator, Lightning flag, BN counters and the
# MANO buffers MANOLayer.forward ignores. They may be missing from a checkpoint.
IGNORABLE_PREFIXES = ("discriminator.",)
IGNORABLE_KEYS = frozenset(
    {
        "initialized",
        "mano.hand_components",
        "mano.hand_mean",
        "mano.pose_mean",
        "mano.vertex_joint_selector.extra_joints_idxs",
    }
)
IGNORABLE_SUFFIXES = (".num_batches_tracked",)
MANO_PREFIX = "mano."  # taken from the MANO file when the checkpoint lacks them
MAX_KEYS_IN_MESSAGE = 40


class CheckpointError(ValueError):
    """The file is not a usable reconstructor checkpoint; the message lists the offending keys."""


class InertConfig(dict, StandIn):
    """Harmless stand-in for config objects pickled in checkpoints (yacs CfgNode, AttributeDict).

    Holds the pickled mapping items as a dict; any pickled instance attributes land in ``attributes``.
    No code of the original class runs.
    """

    @property
    def attributes(self) -> dict[str, Any]:
        return dict(self.state) if isinstance(self.state, dict) else {"state": self.state}


# Classes that pickle as mappings and carry configuration only: read as InertConfig.
_CONFIG_CLASSES = (
    ("yacs.config", "CfgNode"),
    ("pytorch_lightning.utilities.parsing", "AttributeDict"),
    ("lightning_fabric.utilities.data", "AttributeDict"),
    ("lightning.fabric.utilities.data", "AttributeDict"),
)


def _checkpoint_globals() -> dict[GlobalName, Any]:
    """(module, name) -> object for what a Lightning checkpoint legitimately references.

    Written out by hand (torch keeps its own weights-only allowlist private): tensor and parameter
    rebuilders, containers, torch dtypes/devices/sizes, numpy array/scalar reconstruction, paths,
    config classes as InertConfig. Each of these only builds data; none runs user-chosen code.
    """
    allowed: dict[GlobalName, Any] = {
        **NUMPY_GLOBALS,
        **dict.fromkeys(_CONFIG_CLASSES, InertConfig),
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "Counter"): collections.Counter,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
        # protocol-2 pickles store bytes as _codecs.encode(text, "latin1"): pure data conversion
        ("_codecs", "encode"): codecs.encode,
        ("argparse", "Namespace"): argparse.Namespace,
        ("pathlib", "PosixPath"): pathlib.PosixPath,
        ("pathlib", "PurePosixPath"): pathlib.PurePosixPath,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): nn.Parameter,
        ("torch.torch_version", "TorchVersion"): torch.torch_version.TorchVersion,
        ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    }
    for name in (
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
        "_rebuild_device_tensor_from_numpy",
    ):
        if hasattr(torch._utils, name):
            allowed[("torch._utils", name)] = getattr(torch._utils, name)
    return allowed


def _dtype_rule(module: str, name: str) -> Any | None:
    """torch dtypes (torch.float32 ...) pickle as globals of module ``torch``; numpy's dtype classes."""
    if module == "torch":
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype):
            return value
    return numpy_dtype_class(module, name)


def _checkpoint_refusal(module: str, name: str) -> str:
    return (
        f"refusing to load global '{module}.{name}' from the checkpoint: it is not on the allowlist "
        "of data-only classes, and loading it could run code"
    )


class _CheckpointUnpickler(RestrictedUnpickler):
    """The checkpoint allowlist; see the module docstring."""

    allowlist = Allowlist(globals=_checkpoint_globals(), refusal=_checkpoint_refusal, rule=_dtype_rule)


def _restricted_pickle_module() -> SimpleNamespace:
    """A pickle-module look-alike for ``torch.load(pickle_module=...)``."""
    return as_pickle_module(_CheckpointUnpickler)


@dataclass
class CheckpointContents:
    """What ``read_checkpoint`` returns.

    state_dict: key -> tensor (CPU); config: the project's construction arguments, None for official
    checkpoints; synthetic: whether our synthetic-asset tool wrote it; metadata: the raw project entry.
    """

    state_dict: dict[str, torch.Tensor]
    config: ReconstructorConfig | None
    synthetic: bool
    metadata: dict[str, Any]
    top_level_keys: list[str]


def _torch_load(path: Path) -> Any:
    """Read ``path`` without executing its pickle: weights_only first, then the restricted unpickler."""
    mmap = zipfile.is_zipfile(path)  # memory-map the (zip-format) file: no second copy of the weights
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        LOG.info(
            "%s holds objects torch's weights_only loader refuses (%s); reading it with the restricted "
            "unpickler (config objects become plain dicts, nothing is executed)",
            path,
            str(exc).splitlines()[0][:200],
        )
    try:
        return torch.load(
            path, map_location="cpu", weights_only=False, mmap=mmap, pickle_module=_restricted_pickle_module()
        )
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def read_checkpoint(path: str | os.PathLike[str]) -> CheckpointContents:
    """Load a checkpoint file safely (see the module docstring) and pick out the state_dict.

    Accepts a Lightning checkpoint ({"state_dict": ...}) or a bare state_dict. Raises FileNotFoundError
    for a missing file and CheckpointError (a ValueError) for an unreadable or unsafe one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reconstructor checkpoint not found: {path}")
    try:
        raw = _torch_load(path)
    except CheckpointError:
        raise
    except Exception as exc:  # unpickling a corrupt or foreign file can fail with any exception type
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(raw).__name__}")
    if STATE_DICT_KEY in raw and isinstance(raw[STATE_DICT_KEY], dict):
        state_dict = raw[STATE_DICT_KEY]
    elif raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        state_dict = raw
    else:
        raise CheckpointError(
            f"{path}: no '{STATE_DICT_KEY}' entry and not a bare state_dict "
            f"(top-level keys: {sorted(map(str, raw))[:MAX_KEYS_IN_MESSAGE]})"
        )
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    metadata = raw.get(PROJECT_KEY) if isinstance(raw.get(PROJECT_KEY), dict) else {}
    config = ReconstructorConfig.from_dict(dict(metadata["config"])) if "config" in metadata else None
    return CheckpointContents(
        state_dict=tensors,
        config=config,
        synthetic=bool(metadata.get("synthetic", False)),
        metadata=dict(metadata),
        top_level_keys=sorted(map(str, raw)),
    )


def is_ignorable_key(key: str) -> bool:
    """True for state_dict entries inference never reads (SPEC 8)."""
    return key in IGNORABLE_KEYS or key.startswith(IGNORABLE_PREFIXES) or key.endswith(IGNORABLE_SUFFIXES)


def _format_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
    more = f" ... (+{len(keys) - MAX_KEYS_IN_MESSAGE} more)" if len(keys) > MAX_KEYS_IN_MESSAGE else ""
    return f"[{shown}{more}]"


def load_into_meta_model(model: WiLoR, state_dict: dict[str, torch.Tensor], source: str) -> list[str]:
    """Fill ``model`` (built on the meta device except its MANO layer) from ``state_dict`` in place.

    Rules (SPEC 8): every entry inference needs must be present with the right shape, except ``mano.*``,
    which falls back to the MANO layer's own buffers (from the MANO file) when missing; checkpoint values
    win otherwise, as in the official loader. Ignorable entries may be missing (they are then
    initialised: discriminator Xavier/zero, flag False, counters 0). Unknown entries are ignored with a
    warning. Returns the ``mano.*`` keys that were taken from the MANO file.

    Raises CheckpointError listing missing, unexpected and mis-shaped keys for a wrong file.
    """
    expected = model.state_dict(keep_vars=True)
    required = [k for k in expected if not is_ignorable_key(k) and not k.startswith(MANO_PREFIX)]
    missing = [k for k in required if k not in state_dict]
    unexpected = sorted(k for k in state_dict if k not in expected)
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or mismatched:
        raise CheckpointError(
            f"{source} does not fit the reconstructor: "
            f"{len(missing)} missing key(s) {_format_keys(missing)}; "
            f"{len(unexpected)} unexpected key(s) {_format_keys(unexpected)}; "
            f"{len(mismatched)} shape mismatch(es) {_format_keys(mismatched)}. "
            "Pass the WiLoR checkpoint (wilor_final.ckpt) or one written by this project."
        )
    if unexpected:
        LOG.warning("%s: ignoring %d unknown entries %s", source, len(unexpected), _format_keys(unexpected))
    # match the model's dtypes (a checkpoint saved in half precision still loads as float32)
    to_load = {k: v.to(expected[k].dtype) for k, v in state_dict.items() if k in expected}
    model.load_state_dict(to_load, strict=False, assign=True)
    mano_from_file = [k for k in expected if k.startswith(MANO_PREFIX) and k not in state_dict]
    _materialise_leftovers(model)
    return mano_from_file


def _materialise_leftovers(model: WiLoR) -> None:
    """Give real values to the ignorable entries a checkpoint did not provide (still on meta)."""
    if any(t.is_meta for t in model.discriminator.state_dict().values()):
        model.discriminator.to_empty(device="cpu")
        model.discriminator.reset_parameters()
    if model.initialized.is_meta:
        model.initialized = torch.tensor(False)
    for module in model.modules():
        counter = getattr(module, "num_batches_tracked", None)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and counter is not None and counter.is_meta:
            module.num_batches_tracked = torch.zeros((), dtype=torch.long)
    left = [k for k, v in model.state_dict().items() if v.is_meta]
    if left:
        raise RuntimeError(f"internal error: entries left unloaded after checkpoint loading: {left}")


def _package_version() -> str:
    try:
        return importlib.metadata.version("wilor_ros")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def project_metadata(config: ReconstructorConfig, synthetic: bool, **extra: Any) -> dict[str, Any]:
    """The ``ckpt["wilor_ros"]`` entry: plain types only, so weights_only loading accepts it."""
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "package_version": _package_version(),
        "config": asdict(config),
        "synthetic": bool(synthetic),
        **extra,
    }


def write_checkpoint(
    path: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor],
    config: ReconstructorConfig,
    synthetic: bool,
    **extra: Any,
) -> Path:
    """Write a Lightning-layout checkpoint {"state_dict", "wilor_ros"} atomically (temp file + rename)."""
    payload = {STATE_DICT_KEY: state_dict, PROJECT_KEY: project_metadata(config, synthetic, **extra)}
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """torch.save through a temporary file and a rename, so a crash never leaves half a file.

    Refuses (CheckpointError) a payload holding a NaN/infinite tensor: such a checkpoint is never written.
    """
    path = Path(path)
    refuse_non_finite(payload, f"refusing to write {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        torch.save(payload, tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def save_model_checkpoint(path: str | os.PathLike[str], model: WiLoR, synthetic: bool = False) -> Path:
    """Write ``model`` (any size) with its construction arguments so ``load_reconstructor`` rebuilds it."""
    # float32 on disk whatever the compute dtype, like the official checkpoint
    state = {
        k: (v.detach().float() if v.is_floating_point() else v.detach()).to("cpu", copy=True)
        for k, v in model.state_dict().items()
    }
    return write_checkpoint(path, state, model.config, synthetic or model.synthetic)


def _non_finite_tensor(value: Any, name: str) -> tuple[str, int] | None:
    """(name, count) of the first floating-point tensor in a nested payload holding NaN/inf values."""
    if isinstance(value, torch.Tensor):
        if not (value.is_floating_point() or value.is_complex()):
            return None
        finite = torch.isfinite(value)
        return None if bool(finite.all()) else (name, int((~finite).sum()))
    if isinstance(value, dict):
        children: Any = ((f"{name}.{key}" if name else str(key), child) for key, child in value.items())
    elif isinstance(value, (list, tuple)):
        children = ((f"{name}[{i}]", child) for i, child in enumerate(value))
    else:
        return None
    for child_name, child in children:
        found = _non_finite_tensor(child, child_name)
        if found:
            return found
    return None


def refuse_non_finite(payload: Any, context: str) -> None:
    """Raise CheckpointError naming the first tensor of ``payload`` (nested dicts/lists) that holds a
    NaN or infinite value: a diverged model must never be saved or served."""
    found = _non_finite_tensor(payload, "")
    if found:
        name, count = found
        raise CheckpointError(
            f"{context}: tensor '{name}' holds {count} NaN/infinite value(s). The weights diverged; "
            "use an earlier checkpoint (and a lower learning rate or gradient clipping when training)."
        )
