"""Where the model files live, where users get them, and one clear error when any is missing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

ONNX_SUFFIX = ".onnx"
WILOR_RELEASE = "the WiLoR release (https://github.com/rolpotamias/WiLoR, pretrained_models/)"


@dataclass(frozen=True)
class ModelFileInfo:
    """What a model file is, where it comes from and under which licence."""

    role: str
    default_name: str
    source: str
    licence: str
    how_to_make: str = ""  # for derived files: the command that writes them


DETECTOR_PT = ModelFileInfo(
    "hand detector weights (ultralytics YOLO)",
    "detector.pt",
    WILOR_RELEASE,
    "CC-BY-NC-ND 4.0 (weights), ultralytics AGPL-3.0",
)
RECONSTRUCTOR_CKPT = ModelFileInfo(
    "WiLoR reconstructor checkpoint", "wilor_final.ckpt", WILOR_RELEASE, "CC-BY-NC-ND 4.0"
)
MANO_RIGHT = ModelFileInfo(
    "MANO right-hand model v1.2",
    "MANO_RIGHT.pkl",
    "https://mano.is.tue.mpg.de (register, then download 'Models & Code')",
    "MANO licence (non-commercial research use)",
)
DETECTOR_ONNX = ModelFileInfo(
    "hand detector exported to ONNX",
    "detector.onnx",
    "derived from detector.pt",
    "as detector.pt",
    "wilor-ros export --model-dir <dir> (or wilor-ros export-detector)",
)
RECONSTRUCTOR_ONNX = ModelFileInfo(
    "reconstructor exported to ONNX (MANO inside)",
    "wilor.onnx",
    "derived from wilor_final.ckpt and MANO_RIGHT.pkl",
    "as wilor_final.ckpt and MANO",
    "wilor-ros export --model-dir <dir>",
)


class MissingModelFilesError(RuntimeError):
    """Raised with one message naming every missing file, its source and licence."""

    def __init__(self, missing: list[tuple[Path, ModelFileInfo]]) -> None:
        self.missing = missing
        lines = ["missing model file(s):"]
        for path, info in missing:
            lines.append(f"  - {path}: {info.role}")
            if info.how_to_make:
                lines.append(f"      make it with: {info.how_to_make}")
            lines.append(f"      source: {info.source}; licence: {info.licence}")
        lines.append(
            "Put the licensed files in the model folder (see wilor_ros/models/README.md), or run "
            "`wilor-ros make-synthetic-models` for synthetic stand-ins (outputs are not real hands)."
        )
        lines.append(
            "After a colcon install the command line is `ros2 run wilor_ros wilor-ros ...`, e.g. "
            "`ros2 run wilor_ros wilor-ros export --model-dir <dir>`."
        )
        super().__init__("\n".join(lines))


def _readable(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True


def _external_data_files(onnx_path: Path, info: ModelFileInfo) -> list[tuple[Path, ModelFileInfo]]:
    """The side files an ONNX graph file keeps its weights in (core/files/onnx_files.py), with their info."""
    from wilor_ros.core.files.onnx_files import external_data_paths

    return [
        (
            data,
            dataclasses.replace(
                info,
                role=f"weights of {onnx_path.name} (ONNX external data; keep it beside the .onnx)",
                default_name=data.name,
            ),
        )
        for data in external_data_paths(onnx_path)
    ]


def check_model_files(files: list[tuple[Path, ModelFileInfo]]) -> None:
    """Raise MissingModelFilesError naming every file that does not exist or is unreadable, including
    the external-data side file (``wilor.onnx.data``) of an ONNX file that references one."""
    missing = []
    for path, info in files:
        path = Path(path)
        if not path.is_file() or not _readable(path):
            missing.append((path, info))
            continue
        if path.suffix == ONNX_SUFFIX:
            missing += [
                (d, i) for d, i in _external_data_files(path, info) if not (d.is_file() and _readable(d))
            ]
    if missing:
        raise MissingModelFilesError(missing)
