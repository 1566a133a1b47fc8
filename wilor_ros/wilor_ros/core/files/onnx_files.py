"""ONNX files whose weights live in one side file (ONNX "external data"), and their safe writing.

A protobuf message cannot exceed 2 GiB, and the released reconstructor has ~2.5 GB of float32 weights.
Such a model is stored as two files: ``wilor.onnx`` (graph, metadata, tensors under
:data:`INLINE_LIMIT_BYTES`) and ``wilor.onnx.data`` (every larger tensor's raw little-endian bytes at
offsets aligned to :data:`ALIGNMENT_BYTES`), ONNX's standard external-data layout: each tensor in the
graph file names ``location`` (relative to the graph file's folder), ``offset`` and ``length``. ONNX
Runtime, TensorRT's ``OnnxParser.parse_from_file`` and ``onnx.load`` read it as it is.

Writing streams tensor bytes from their sources into the side file one tensor at a time, so no
serialized >2 GiB proto and no second in-memory copy of the weights is ever made (``onnx.save`` with
``save_as_external_data`` needs every tensor in memory first, which is why this is written here).
:func:`staged_onnx` gives an exporter temporary names in the target folder and renames the finished
files into place, so a failure leaves nothing half-written.

No torch here: the ONNX Runtime runtime uses this module without torch installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

DATA_SUFFIX = ".data"  # wilor.onnx -> wilor.onnx.data
PROTOBUF_LIMIT_BYTES = 1 << 31  # no serialized protobuf message may reach this
# Weights above this go to the side file even when not forced: far enough below protobuf's 2 GiB
# that the graph, metadata and small tensors always fit beside them.
EXTERNAL_DATA_THRESHOLD_BYTES = 1 << 30
INLINE_LIMIT_BYTES = 1024  # smaller tensors stay in the graph file (onnx's own size_threshold default)
# Offsets of large tensors are multiples of this: the allocation granularity ONNX Runtime needs to
# memory-map a tensor instead of copying it (64 KiB on Windows, a multiple of the page size elsewhere).
ALIGNMENT_BYTES = 1 << 16
ALIGN_ABOVE_BYTES = 1 << 20  # smaller tensors are packed without padding
COPY_CHUNK_BYTES = 16 << 20
SHA_CHUNK_BYTES = 1 << 20
STAGING_PREFIX = ".staging-"


def data_file_name(onnx_name: str) -> str:
    """The side file's name for a graph file name (``wilor.onnx`` -> ``wilor.onnx.data``)."""
    return f"{onnx_name}{DATA_SUFFIX}"


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto of a graph: initializers and node attributes, subgraphs included."""
    from onnx import AttributeProto

    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.GRAPH:
                yield from _tensors(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _tensors(sub)


def _is_external(tensor: onnx.TensorProto) -> bool:
    from onnx import TensorProto

    return tensor.data_location == TensorProto.EXTERNAL


def _external_info(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def load_graph(onnx_path: str | Path) -> onnx.ModelProto:
    """The graph file alone: external tensors stay references (cheap for any model size)."""
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False)


def external_data_paths(onnx_path: str | Path, model: onnx.ModelProto | None = None) -> list[Path]:
    """The files ``onnx_path`` reads tensor data from (beside it), sorted; [] when self-contained."""
    model = load_graph(onnx_path) if model is None else model
    locations = {_external_info(t)["location"] for t in _tensors(model.graph) if _is_external(t)}
    folder = Path(onnx_path).parent
    for location in locations:
        if Path(location).is_absolute() or ".." in Path(location).parts:
            raise ValueError(
                f"{onnx_path} names external data {location!r} outside its folder; "
                "ONNX side files must lie beside the graph file (re-export it with `wilor-ros export`)"
            )
    return [folder / location for location in sorted(locations)]


def is_complete(onnx_path: str | Path) -> bool:
    """True when the graph file and every side file it references exist."""
    path = Path(onnx_path)
    return path.is_file() and all(p.is_file() for p in external_data_paths(path))


def check_external_data(onnx_path: str | Path) -> None:
    """Raise RuntimeError naming every side file ``onnx_path`` references but that does not exist."""
    missing = [p for p in external_data_paths(onnx_path) if not p.is_file()]
    if missing:
        names = ", ".join(str(p) for p in missing)
        raise RuntimeError(
            f"{onnx_path} keeps its weights in {names}, which is missing: keep the .onnx and its "
            f"{DATA_SUFFIX} file together in one folder (copy both), or re-export with `wilor-ros export`"
        )


def file_sha256(path: str | Path) -> str:
    """Plain sha256 of one file, read in chunks."""
    digest = hashlib.sha256()
    _hash_file(digest, Path(path))
    return digest.hexdigest()


def _hash_file(digest: hashlib._Hash, path: Path) -> None:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(SHA_CHUNK_BYTES), b""):
            digest.update(chunk)


def model_sha256(onnx_path: str | Path) -> str:
    """sha256 of the graph file, then of every side file it references (name and bytes).

    For a self-contained file this is the file's plain sha256; any change of either file changes it.
    """
    digest = hashlib.sha256()
    _hash_file(digest, Path(onnx_path))
    for path in external_data_paths(onnx_path):
        digest.update(b"\0" + path.name.encode() + b"\0")  # moving bytes between files changes it too
        _hash_file(digest, path)
    return digest.hexdigest()


def tensor_bytes(model: onnx.ModelProto, source_dir: str | Path | None = None) -> int:
    """Total bytes of the model's tensor data, inline and external (the external lengths as recorded,
    or the referenced file's size when no length is recorded)."""
    total = 0
    for tensor in _tensors(model.graph):
        if _is_external(tensor):
            info = _external_info(tensor)
            if "length" in info:
                total += int(info["length"])
            elif source_dir is not None:
                total += (Path(source_dir) / info["location"]).stat().st_size - int(info.get("offset", 0))
        else:
            total += tensor.ByteSize()
    return total


def _inline_payload(tensor: onnx.TensorProto) -> bytes | None:
    """The raw bytes of an inline tensor of >= INLINE_LIMIT_BYTES (then cleared from it), else None.

    Only ``raw_data`` tensors move (what torch's exporter and numpy_helper write); tensors held in
    typed fields (float_data, ...) stay inline.
    """
    if not tensor.HasField("raw_data") or len(tensor.raw_data) < INLINE_LIMIT_BYTES:
        return None
    payload = tensor.raw_data
    tensor.ClearField("raw_data")
    return payload


def _copy_range(source: Path, offset: int, length: int | None, out: object) -> int:
    """Copy ``length`` bytes (all to EOF when None) at ``offset`` of ``source`` to ``out`` -> bytes copied."""
    copied = 0
    with source.open("rb") as handle:
        handle.seek(offset)
        while length is None or copied < length:
            want = COPY_CHUNK_BYTES if length is None else min(COPY_CHUNK_BYTES, length - copied)
            chunk = handle.read(want)
            if not chunk:
                break
            out.write(chunk)  # type: ignore[attr-defined]
            copied += len(chunk)
    if length is not None and copied != length:
        raise ValueError(f"{source} ends after {offset + copied} bytes; the graph expects {offset + length}")
    return copied


def write_onnx(
    model: onnx.ModelProto,
    path: str | Path,
    *,
    source_dir: str | Path | None = None,
    external_data: bool | None = None,
) -> Path:
    """Write ``model`` to ``path`` and, with external data, its tensors to ``path`` + ``.data``.

    model: a ModelProto whose tensors may be inline or external (files relative to ``source_dir``,
        e.g. loaded with :func:`load_graph`, or the loose per-tensor files of torch's exporter); it is
        modified in place (tensors become references into the new side file).
    external_data: True = every tensor of >= INLINE_LIMIT_BYTES goes to the side file; False = one
        self-contained file (ValueError above protobuf's limit); None = side file only when the
        weights exceed EXTERNAL_DATA_THRESHOLD_BYTES.
    Tensor bytes are streamed one tensor at a time (external ones copied in chunks). Not atomic by
    itself: write into :func:`staged_onnx`'s folder for that.
    """
    path = Path(path)
    source = Path(source_dir) if source_dir is not None else path.parent
    if external_data is None:
        external_data = tensor_bytes(model, source) > EXTERNAL_DATA_THRESHOLD_BYTES
    path.parent.mkdir(parents=True, exist_ok=True)
    if not external_data:
        _load_external_tensors(model, source)
        if model.ByteSize() >= PROTOBUF_LIMIT_BYTES:
            raise ValueError(
                f"{path}: {model.ByteSize()} bytes exceed protobuf's 2 GiB; write it with external_data=True"
            )
        path.write_bytes(model.SerializeToString())
        return path
    location = data_file_name(path.name)
    with (path.parent / location).open("wb") as out:
        for tensor in _tensors(model.graph):
            if _is_external(tensor):
                info = _external_info(tensor)
                length = int(info["length"]) if "length" in info else None
                offset = int(info.get("offset", 0))
                payload_source: bytes | Path = source / info["location"]
            else:
                payload = _inline_payload(tensor)
                if payload is None:
                    continue
                payload_source, offset, length = payload, 0, len(payload)
            if length is None or length >= ALIGN_ABOVE_BYTES:
                out.seek(-out.tell() % ALIGNMENT_BYTES, os.SEEK_CUR)
            start = out.tell()
            if isinstance(payload_source, Path):
                length = _copy_range(payload_source, offset, length, out)
            else:
                out.write(payload_source)
            _point_to(tensor, location, start, length)
    path.write_bytes(model.SerializeToString())
    return path


def _point_to(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    """Make ``tensor`` a reference to ``length`` bytes at ``offset`` of ``location`` (its data moved there;
    onnx's set_external_data insists on a raw_data field, which is already cleared here)."""
    from onnx import TensorProto

    del tensor.external_data[:]
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _load_external_tensors(model: onnx.ModelProto, source: Path) -> None:
    from onnx.external_data_helper import load_external_data_for_tensor

    for tensor in _tensors(model.graph):
        if _is_external(tensor):
            load_external_data_for_tensor(tensor, str(source))
            tensor.data_location = 0  # DEFAULT
            del tensor.external_data[:]


def remove_onnx(path: str | Path) -> None:
    """Delete a graph file and its side file, if present."""
    path = Path(path)
    path.unlink(missing_ok=True)
    (path.parent / data_file_name(path.name)).unlink(missing_ok=True)


@contextlib.contextmanager
def staged_onnx(path: str | Path) -> Iterator[Path]:
    """Write ``path`` (and its side file) atomically: yields a path with the final file name in a new
    hidden folder beside ``path``; on success the side file, then the graph file, are renamed into
    place (a stale side file of an older export is removed); the folder goes in every case, so a
    failure leaves neither the new files nor anything the writer dropped there (e.g. torch's loose
    per-tensor files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{path.name}.", dir=path.parent))
    try:
        staged = folder / path.name
        yield staged
        if not staged.is_file():
            raise RuntimeError(f"internal error: nothing was written to {staged}")
        data_name = data_file_name(path.name)
        if (folder / data_name).is_file():
            os.replace(folder / data_name, path.parent / data_name)
            os.replace(staged, path)
        else:
            os.replace(staged, path)
            (path.parent / data_name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
