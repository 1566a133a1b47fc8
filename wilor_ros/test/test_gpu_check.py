"""scripts/gpu_check.sh on the CPU under the conditions of the bare GPU machine it is written for: a Python
that has only PyTorch, numpy, scipy, OpenCV, onnx and ONNX Runtime (a venv linking just those), no ROS,
no TensorRT, smplx and psutil only from the listed wheels, the package from the source tree. It must
degrade to a CPU run that says so and still do every step."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wilor_ros.tools.gpu_check import WHEEL_LIST, install_wheels, read_wheel_list

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"

# What the bare GPU machine has: Python, PyTorch, numpy, scipy, OpenCV, onnx, ONNX Runtime (and what they
# depend on). Nothing else: no ROS, no yaml/rich, no smplx/psutil until the script unpacks their wheels.
BARE_DISTRIBUTIONS = ("torch", "numpy", "scipy", "opencv-python-headless", "onnx", "onnxruntime")


def dependency_closure(names: tuple[str, ...]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions ``names`` need (required dependencies, markers evaluated)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:  # an optional platform dependency not installed
            continue
        found[name] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def make_bare_python(folder: Path) -> Path:
    """A venv (no pip) whose site-packages holds only links to BARE_DISTRIBUTIONS and their dependencies."""
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    answer = subprocess.run(
        [str(folder / "bin" / "python"), "-c", query], check=True, capture_output=True, text=True
    )
    site = Path(answer.stdout.strip())
    for dist in dependency_closure(BARE_DISTRIBUTIONS).values():
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            source, link = Path(dist.locate_file(top)), site / top
            if source.exists() and not link.exists():
                link.symlink_to(source)
    return folder / "bin" / "python"


def wheel_folder(tmp_path: Path) -> Path:
    """The listed wheels: WILOR_GPU_CHECK_WHEELS, wheels/gpu_check, or fetched from PyPI now."""
    names = [name for name, _, _ in read_wheel_list()]
    for candidate in (os.environ.get("WILOR_GPU_CHECK_WHEELS"), str(REPO / "wheels" / "gpu_check")):
        if candidate and all(any(Path(candidate).glob(f"{n}-*.whl")) for n in names):
            return Path(candidate)
    folder = tmp_path / "wheels"
    fetch = subprocess.run(
        ["bash", str(SCRIPT), "--fetch-wheels", "--wheels", str(folder)],
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if fetch.returncode != 0:
        pytest.skip(f"no gpu_check wheels here and no PyPI access to fetch them: {fetch.stderr[-300:]}")
    return folder


def test_wheel_list_pins_versions_and_hashes():
    entries = read_wheel_list(WHEEL_LIST)
    assert {name for name, _, _ in entries} == {"smplx", "psutil"}
    assert all(version and len(next(iter(hashes))) == 64 for _, version, hashes in entries)


def test_a_wheel_with_a_wrong_hash_is_refused(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    listing = tmp_path / "list.txt"
    # a distribution that imports nowhere (smplx does import in this environment, and would be skipped)
    listing.write_text("wilor-test-absent==0.1.28 --hash=sha256:" + "0" * 64 + "\n")
    (folder / "wilor_test_absent-0.1.28-py3-none-any.whl").write_bytes(b"not the listed file")
    with pytest.raises(RuntimeError, match="--fetch-wheels"):
        install_wheels(folder, tmp_path / "target", listing)


@pytest.mark.slow
def test_gpu_check_degrades_to_a_cpu_run_on_a_bare_machine(tmp_path, reference_dir):
    wheels = wheel_folder(tmp_path)
    python = make_bare_python(tmp_path / "bare")
    for absent in ("rclpy", "smplx", "psutil", "yaml", "rich", "wilor_ros"):  # the stand-in is really bare
        probe = subprocess.run([str(python), "-c", f"import {absent}"], capture_output=True, cwd=tmp_path)
        assert probe.returncode != 0, absent
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PYTHON=str(python),
        CUDA_VISIBLE_DEVICES="",  # the CPU path, also on a machine that has a GPU
        WILOR_REFERENCE=str(reference_dir),
    )
    cmd = ["bash", str(SCRIPT), "--out", str(out), "--wheels", str(wheels), "--size", "small",
           "--iterations", "1", "--threads", "2", "--budget-s", "120"]  # fmt: skip
    result = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "site-packages" / "smplx").is_dir() and (out / "site-packages" / "psutil").is_dir()

    doc = json.loads((out / "gpu_check.json").read_text())
    assert any("NO CUDA DEVICE" in note for note in doc["notes"])
    steps = doc["steps"]
    assert {k: v["status"] for k, v in steps.items()} == dict.fromkeys(
        ("environment", "models", "parity", "precision", "latency"), "ok"
    )
    assert steps["environment"]["device"] == "cpu"
    assert steps["parity"]["goldens_within_1e-4"] is True
    assert steps["precision"]["fp16"].startswith("refused") and "CUDA" in steps["precision"]["fp16"]
    assert "41 hands" in steps["precision"]["crops"]
    rows = steps["latency"]["rows"]
    assert {(r["backend"], r["hands"]) for r in rows} >= {(w, h) for w in ("pytorch", "baseline-eager")
                                                           for h in (1, 2, 4)}  # fmt: skip
    assert all(r["image_size"] == [1280, 720] for r in rows)
    assert all(r["speedup_vs_baseline"] > 0 and r["deviation"] is not None for r in rows)
    text = (out / "gpu_check.md").read_text()
    assert "NO CUDA DEVICE" in text and "## Latency, 1280x720" in text and "baseline-eager" in text
