"""Reconstructor checkpoints written the way the training run writes them (issue 11, item 1).

Lightning saves with ``torch.save``'s default pickle protocol 2, in which the standard pickler names
builtins by their Python 2 modules (``__builtin__.set`` inside a yacs ``CfgNode``). These checkpoints
are made with the real writers (yacs ``CfgNode``, Lightning's ``AttributeDict``, a real AdamW state,
``torch.save`` defaults) and loaded in a separate process where yacs and Lightning cannot be imported,
through ``load_reconstructor`` and through ``wilor-ros export``.
"""

from __future__ import annotations

import builtins
import os
import pickletools
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import import_blocker_source

from wilor_ros.core.files.model_files import MANO_RIGHT, RECONSTRUCTOR_CKPT, RECONSTRUCTOR_ONNX
from wilor_ros.core.models.checkpoint import CheckpointError, read_checkpoint
from wilor_ros.tools.synthetic_checkpoint import make_synthetic_checkpoint
from wilor_ros.tools.synthetic_mano import make_synthetic_mano
from wilor_ros.tools.synthetic_models import synthetic_config

yacs_config = pytest.importorskip("yacs.config", reason="yacs is a test dependency (requirements/dev.txt)")
fabric_data = pytest.importorskip(
    "lightning_fabric.utilities.data", reason="lightning-fabric is a test dependency (requirements/dev.txt)"
)

# the training stacks: absent where the robot loads the checkpoint
BLOCKED = ("yacs", "lightning", "lightning_fabric", "pytorch_lightning", "lightning_utilities")
SUBPROCESS_TIMEOUT_S = 600

LOADER = import_blocker_source(BLOCKED) + textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from wilor_ros.core.models.reconstructor import load_reconstructor
    from wilor_ros.tools.cli import main

    folder = Path(sys.argv[1])
    model = load_reconstructor(folder / "wilor_final.ckpt", folder / "MANO_RIGHT.pkl")
    print("embed_dim", model.config.embed_dim)
    rc = main(["export", "--model-dir", str(folder), "--skip-detector"])
    print("export rc", rc)
    assert not any(name.split(".")[0] in BLOCKED for name in sys.modules), "a blocked module was imported"
    """
)


def _training_config() -> yacs_config.CfgNode:
    """A frozen training config nested two levels deep, as the official get_config returns it."""
    cfg = yacs_config.CfgNode()
    cfg.MODEL = yacs_config.CfgNode()
    cfg.MODEL.IMAGE_SIZE = 256
    cfg.MODEL.IMAGE_MEAN = [0.485, 0.456, 0.406]
    cfg.MODEL.BACKBONE = yacs_config.CfgNode()
    cfg.MODEL.BACKBONE.TYPE = "vit"
    cfg.MODEL.BACKBONE.PRETRAINED_WEIGHTS = "vitpose_backbone.pth"
    cfg.MANO = yacs_config.CfgNode()
    cfg.MANO.NUM_HAND_JOINTS = 15
    cfg.EXTRA = yacs_config.CfgNode({"FOCAL_LENGTH": 5000, "NUM_LOG_IMAGES": 4})
    cfg.freeze()
    return cfg


def _optimizer_state() -> dict:
    """A real AdamW state after one step (what Lightning stores in optimizer_states)."""
    weight = torch.nn.Parameter(torch.ones(4, 3))
    optimizer = torch.optim.AdamW([weight], lr=1e-5, weight_decay=1e-4)
    weight.sum().backward()
    optimizer.step()
    return optimizer.state_dict()


def write_lightning_checkpoint(folder: Path, hparams_kind: str) -> Path:
    """The synthetic small reconstructor in the layout of a Lightning training checkpoint.

    Besides the weights it holds what Lightning's checkpoint connector writes: versions, loop and
    callback state, optimizer states and ``hyper_parameters`` = the module's ``save_hyperparameters``
    (an AttributeDict holding the yacs config, or a plain dict). Our ``wilor_ros`` entry is kept so the
    loader knows this is the small architecture (an official checkpoint has none and is full size).
    """
    mano = folder / MANO_RIGHT.default_name
    make_synthetic_mano(mano)
    small = make_synthetic_checkpoint(folder / "small.ckpt", synthetic_config("small"), mano)
    ours = torch.load(small, weights_only=True)
    small.unlink()
    hparams_items = {"cfg": _training_config(), "init_renderer": False}
    hparams = fabric_data.AttributeDict(hparams_items) if hparams_kind == "AttributeDict" else hparams_items
    payload = {
        "epoch": 12,
        "global_step": 120000,
        "pytorch-lightning_version": "2.2.1",
        "state_dict": ours["state_dict"],
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 13}}}},
        "callbacks": {"ModelCheckpoint": {"monitor": None, "best_model_score": None}},
        "optimizer_states": [_optimizer_state()],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hparams,
        "wilor_ros": ours["wilor_ros"],
    }
    path = folder / RECONSTRUCTOR_CKPT.default_name
    torch.save(payload, path)  # defaults: zip container, pickle protocol 2
    return path


def pickled_globals(checkpoint: Path) -> set[str]:
    """'module name' of every GLOBAL opcode in the checkpoint's pickle."""
    with zipfile.ZipFile(checkpoint) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    return {str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


@pytest.mark.parametrize("hparams_kind", ["AttributeDict", "dict"])
def test_training_run_checkpoint_loads_and_exports_without_yacs_or_lightning(
    tmp_path: Path, hparams_kind: str
) -> None:
    checkpoint = write_lightning_checkpoint(tmp_path, hparams_kind)
    names = pickled_globals(checkpoint)
    assert "__builtin__ set" in names  # the Python 2 name this issue is about is really in the file
    assert "yacs.config CfgNode" in names
    if hparams_kind == "AttributeDict":
        assert "lightning_fabric.utilities.data AttributeDict" in names

    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert f"embed_dim {synthetic_config('small').embed_dim}" in result.stdout
    assert "export rc 0" in result.stdout, result.stderr[-4000:]
    assert (tmp_path / RECONSTRUCTOR_ONNX.default_name).is_file()


def test_config_objects_arrive_as_inert_dicts(tmp_path: Path) -> None:
    checkpoint = write_lightning_checkpoint(tmp_path, "AttributeDict")
    contents = read_checkpoint(checkpoint)
    assert "hyper_parameters" in contents.top_level_keys and "optimizer_states" in contents.top_level_keys
    raw = torch.load(checkpoint, weights_only=False, pickle_module=_restricted())
    cfg = raw["hyper_parameters"]["cfg"]
    assert type(cfg).__module__ == "wilor_ros.core.models.checkpoint"  # not yacs: no yacs code ran
    assert cfg["MODEL"]["BACKBONE"]["TYPE"] == "vit"  # two levels down, values kept
    assert cfg.attributes["__deprecated_keys__"] == set()  # the __builtin__.set, read as a set
    assert cfg.attributes["__immutable__"] is True


def _restricted():
    from wilor_ros.core.models.checkpoint import _restricted_pickle_module

    return _restricted_pickle_module()


class _Call:
    """Pickles as ``function(*args)``: what a malicious checkpoint would run at load time."""

    def __init__(self, function: object, *args: object) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple:
        return (self.function, self.args)


@pytest.mark.parametrize(
    ("function", "pickled_as"),
    [
        (builtins.eval, "__builtin__ eval"),
        (builtins.exec, "__builtin__ exec"),
        (builtins.getattr, "__builtin__ getattr"),
        (builtins.__import__, "__builtin__ __import__"),
        (os.system, f"{os.system.__module__} system"),
        (subprocess.check_output, "commands check_output"),
        (subprocess.Popen, "commands Popen"),
    ],
)
def test_code_running_globals_are_refused_under_their_python2_names(
    tmp_path: Path, function: object, pickled_as: str
) -> None:
    marker = tmp_path / "ran"
    evil = _Call(function, str(marker))
    payload = {"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"evil": evil}}
    path = tmp_path / "evil.ckpt"
    torch.save(payload, path)
    assert pickled_as in pickled_globals(path)  # protocol 2 wrote the Python 2 name (or os' real module)
    name = pickled_as.split()[1]
    with pytest.raises(CheckpointError, match="refusing to load global") as caught:
        read_checkpoint(path)
    assert name in str(caught.value)
    assert not marker.exists()
