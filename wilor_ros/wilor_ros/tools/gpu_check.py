"""The GPU check behind ``scripts/gpu_check.sh``: one run on a bare CUDA machine -> JSON + markdown.

It needs only Python, PyTorch, numpy/scipy/opencv/onnx/onnxruntime and the few wheels listed in
scripts/gpu_check_wheels.txt (``install-wheels`` puts them into a folder on PYTHONPATH); no ROS, no
TensorRT, no network. Steps, each timed and recorded even when it fails (the JSON is rewritten after
every step, so a run stopped from outside still leaves what was done):

1. environment: GPU, driver-side CUDA version of torch, CPU bf16 flags, load average;
2. parity: the parity kit's golden_small weights on the device in fp32 (TF32 off) against the official
   CPU outputs (goldens), and the full-size synthetic model on the device against the CPU in fp32;
3. precision: fp16 and bf16 (the mixed recipe) against fp32 on the same device, vertices and joints in mm,
   on the kit's photos (demo_boxes.json) or, without the kit, on random crops;
4. latency: ``bench`` at 1280x720 with 1/2/4 hands: the official-demo baseline, eager fp32/fp16/bf16,
   device-side crops, CUDA graphs, torch.compile (their warm-up cost included), within a time budget.

Without CUDA it runs the same steps on the CPU with a small model and says so at the top of both files,
so that the script is known to work before a GPU is at hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import re
import sys
import time
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

LOG = logging.getLogger("wilor_ros.gpu_check")

REPO_ROOT = Path(__file__).resolve().parents[3]
WHEEL_LIST = REPO_ROOT / "scripts" / "gpu_check_wheels.txt"
# Latency ways not started this many seconds after the check began are skipped (and listed as such): the
# check must end within 8 minutes, and the last ways (torch.compile: two compilations of the ViT-H, then
# a cache hit for compile+graphs) may take a few minutes on their own. --budget-s changes it.
DEFAULT_BUDGET_S = 270.0
GPU_WAYS = (
    "pytorch",
    "baseline-eager",
    "pytorch:fp16",
    "pytorch:bf16",
    "pytorch:fp16+devcrop",
    "pytorch:fp16+graphs",
    "pytorch:fp16+graphs+devcrop",
    "pytorch:fp16+compile",
    "pytorch:fp16+compile+graphs",
)
CPU_NOTE = (
    "NO CUDA DEVICE: this run used the CPU (small synthetic model unless --size was given). It checks that "
    "the script works; its figures are CPU figures, not GPU results."
)
LENGTH_MM = 1000.0


# ------------------------------------------------------------------ wheels
def read_wheel_list(path: Path = WHEEL_LIST) -> list[tuple[str, str, set[str]]]:
    """(distribution, version, sha256 hashes) per line ``name==version --hash=sha256:<hex> ...``."""
    entries = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line:
            continue
        requirement, *options = line.split()
        name, _, version = requirement.partition("==")
        hashes = {opt.split("sha256:", 1)[1] for opt in options if opt.startswith("--hash=sha256:")}
        if not version or not hashes:
            raise ValueError(f"{path}: '{raw}' must pin name==version and give --hash=sha256:...")
        entries.append((name, version, hashes))
    return entries


def module_name(distribution: str) -> str:
    return distribution.lower().replace("-", "_")


def install_wheels(wheel_dir: Path, target: Path, list_path: Path = WHEEL_LIST) -> list[str]:
    """Unpack each listed wheel whose module does not import yet into ``target`` (after checking its
    sha256): these wheels need no install step beyond unpacking (pure Python or abi3, no entry points),
    so neither pip nor a network is needed. Returns one line per wheel saying what happened."""
    lines = []
    for name, version, hashes in read_wheel_list(list_path):
        module = module_name(name)
        try:
            found = importlib.util.find_spec(module)
        except ImportError:
            found = None
        if found is not None and not str(found.origin or "").startswith(str(target)):
            lines.append(f"{name}: already importable ({found.origin})")
            continue
        prefix = re.sub(r"[-_.]+", "_", name).lower()
        candidates = sorted(
            p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(f"{prefix}-{version}-")
        )
        match = next((p for p in candidates if hashlib.sha256(p.read_bytes()).hexdigest() in hashes), None)
        if match is None:
            seen = ", ".join(p.name for p in candidates) or "none"
            raise RuntimeError(
                f"no wheel of {name}=={version} with a listed sha256 in {wheel_dir} (found: {seen}). On a "
                "machine with PyPI access run `scripts/gpu_check.sh --fetch-wheels` and bring that folder."
            )
        with zipfile.ZipFile(match) as archive:
            archive.extractall(target)
        lines.append(f"{name}: unpacked {match.name} into {target}")
    return lines


# ------------------------------------------------------------------ the check
class Check:
    """Collects step results into one JSON document and rewrites it after every step."""

    def __init__(self, out_dir: Path, budget_s: float) -> None:
        self.out_dir = out_dir
        self.started = time.monotonic()
        self.budget_s = budget_s
        self.doc: dict[str, Any] = {"notes": [], "steps": {}}
        out_dir.mkdir(parents=True, exist_ok=True)

    def remaining(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        start = time.monotonic()
        LOG.info("gpu_check: %s ...", name)
        try:
            result: dict[str, Any] = {"status": "ok", **fn()}
        except Exception as exc:  # one failing step must not hide the others
            result = {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(),
            }
            LOG.error("gpu_check: %s failed: %s", name, result["error"])
        result["seconds"] = round(time.monotonic() - start, 2)
        self.doc["steps"][name] = result
        self.write()
        return result if result["status"] == "ok" else None

    def write(self) -> None:
        self.doc["elapsed_s"] = round(time.monotonic() - self.started, 2)
        (self.out_dir / "gpu_check.json").write_text(json.dumps(self.doc, indent=2, default=str))


def find_reference(explicit: str | None) -> Path | None:
    candidates = [explicit, os.environ.get("WILOR_REFERENCE")]
    candidates += [str(REPO_ROOT.parent / "shared" / "reference"), str(REPO_ROOT / "shared" / "reference")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "SPEC.md").is_file():
            return Path(candidate)
    return None


def environment(device: str) -> dict[str, Any]:
    import torch

    from wilor_ros.core.models.cpu_features import describe_bf16_support
    from wilor_ros.tools.bench import cpu_model_name, load_average

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "device": device,
        "cpu": cpu_model_name(),
        "cpu_bf16": describe_bf16_support(),
        "cpu_threads": torch.get_num_threads(),
        "loadavg_start": load_average(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def make_models(folder: Path, size: str) -> dict[str, Any]:
    """Synthetic MANO + checkpoint of ``size`` (no ONNX: nothing here needs it)."""
    from wilor_ros.tools.synthetic_checkpoint import make_synthetic_checkpoint
    from wilor_ros.tools.synthetic_mano import make_synthetic_mano
    from wilor_ros.tools.synthetic_models import synthetic_config

    folder.mkdir(parents=True, exist_ok=True)
    mano, ckpt = folder / "MANO_RIGHT.pkl", folder / "wilor_final.ckpt"
    if not mano.is_file():
        make_synthetic_mano(mano)
    if not ckpt.is_file():
        make_synthetic_checkpoint(ckpt, synthetic_config(size), mano)
    return {"model_dir": str(folder), "size": size, "checkpoint_mb": round(ckpt.stat().st_size / 2**20)}


def output_table(a: Any, b: Any) -> dict[str, dict[str, float]]:
    """Per ReconstructorOutput field: max/mean |a - b| (lengths in mm)."""
    from wilor_ros.tools.compare_backends import compare_outputs

    return {r.name: {"max": r.max_abs, "mean": r.mean_abs, "unit": r.unit} for r in compare_outputs(a, b)}


def parity(reference: Path | None, model_dir: Path, device: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from wilor_ros.core.backends.torch_backend import TorchBackend, official_outputs
    from wilor_ros.core.models import ReconstructorConfig
    from wilor_ros.core.models.checkpoint import write_checkpoint
    from wilor_ros.core.models.reconstructor import load_reconstructor

    result: dict[str, Any] = {}
    if reference is None:
        result["goldens"] = (
            "skipped: parity kit not found (--reference, WILOR_REFERENCE or ../shared/reference)"
        )
    else:
        with np.load(reference / "golden_small.npz") as data:
            golden = {k: np.array(data[k]) for k in data.files}
        prefix = "state_dict/"
        state = {k[len(prefix) :]: torch.from_numpy(v) for k, v in golden.items() if k.startswith(prefix)}
        ckpt = write_checkpoint(model_dir / "golden_small.ckpt", state, ReconstructorConfig.small(), False)
        model = load_reconstructor(ckpt, reference / "mano_synthetic_right.pkl", device=device)
        with torch.inference_mode():
            out = official_outputs(model(torch.from_numpy(golden["in/img"]).to(device)))
        names = (
            "pred_cam",
            "global_orient",
            "hand_pose",
            "betas",
            "keypoints_3d",
            "vertices",
            "keypoints_2d",
        )
        keys = ("out/pred_cam", "out/pred_mano_params/global_orient", "out/pred_mano_params/hand_pose",
                "out/pred_mano_params/betas", "out/pred_keypoints_3d", "out/pred_vertices",
                "out/pred_keypoints_2d")  # fmt: skip
        diffs = {}
        for name, key, tensor in zip(names, keys, out):
            ours = tensor.float().cpu().numpy().reshape(golden[key].shape)
            diffs[name] = float(np.abs(ours - golden[key]).max())
        result["goldens_max_abs"] = diffs
        result["goldens_within_1e-4"] = all(v <= 1e-4 for v in diffs.values())
    if device.startswith("cuda"):
        ckpt, mano = model_dir / "wilor_final.ckpt", model_dir / "MANO_RIGHT.pkl"
        crops = np.random.default_rng(0).standard_normal((4, 3, 256, 256)).astype(np.float32)
        on_device = TorchBackend.from_files(ckpt, mano, device=device).infer(crops)
        on_cpu = TorchBackend.from_files(ckpt, mano, device="cpu").infer(crops)
        result["full_size_device_vs_cpu_fp32"] = output_table(on_device, on_cpu)
    return result


def half_precisions() -> tuple[str, ...]:
    """The mixed precisions of the reference runtime (core/backends/registry.py): fp16, bf16."""
    from wilor_ros.core.backends.registry import BACKENDS
    from wilor_ros.tools.compare_backends import BackendSpec

    reference = BackendSpec.reference()
    return tuple(p for p in BACKENDS[reference.runtime].precisions if p != reference.precision)


def precision_errors(reference: Path | None, model_dir: Path, device: str) -> dict[str, Any]:
    import numpy as np

    from wilor_ros.tools.compare_backends import BackendSpec, crops_from_images, load_backend, run_chunks

    fp32_spec = BackendSpec.reference()

    if reference is not None and (reference / "demo_boxes.json").is_file():
        crops = crops_from_images(reference / "demo_images", reference / "demo_boxes.json")
        source = f"{len(crops)} hands of the kit's demo photos"
    else:
        crops = np.random.default_rng(0).standard_normal((8, 3, 256, 256)).astype(np.float32)
        source = "8 random crops (parity kit not found)"
    result: dict[str, Any] = {"crops": source, "reference": f"{fp32_spec} on {device}"}
    fp32 = run_chunks(load_backend(fp32_spec, model_dir, device), crops, 16)
    for precision in half_precisions():
        try:
            backend = load_backend(dataclasses.replace(fp32_spec, precision=precision), model_dir, device)
        except ValueError as exc:  # fp16 on a CPU, bf16 on a CPU without bf16 instructions
            result[precision] = f"refused: {exc}"
            continue
        result[precision] = output_table(run_chunks(backend, crops, 16), fp32)
        del backend
    return result


def latency(model_dir: Path, device: str, ways: tuple[str, ...], budget_s: float, iterations: int) -> dict:
    from wilor_ros.tools.bench import BenchConfig, run_bench

    config = BenchConfig(
        model_dir=str(model_dir),
        backends=ways,
        hands=(1, 2, 4),
        image_sizes=((1280, 720),),
        device=device,
        warmup=2,
        iterations=iterations,
        detector=False,
        budget_s=budget_s,
    )
    return asdict(run_bench(config))


# ------------------------------------------------------------------ markdown
def markdown(doc: dict[str, Any]) -> str:
    steps = doc["steps"]
    lines = ["# wilor_ros GPU check", ""]
    lines += [f"> **{note}**" for note in doc["notes"]] + [""]
    env = steps.get("environment", {})
    shown = {k: v for k, v in env.items() if k not in ("status", "trace", "seconds")}
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in shown.items()]
    lines += ["", "## Steps", "", "| step | status | seconds | error |", "|---|---|---|---|"]
    for name, step in steps.items():
        lines.append(f"| {name} | {step['status']} | {step.get('seconds')} | {step.get('error', '')} |")
    par = steps.get("parity", {})
    if "goldens_max_abs" in par:
        lines += ["", "## Parity (device fp32 vs the official CPU goldens, max |diff|)", ""]
        lines += ["| output | max abs |", "|---|---|"]
        lines += [f"| {k} | {v:.2e} |" for k, v in par["goldens_max_abs"].items()]
    elif "goldens" in par:
        lines += ["", f"Parity: {par['goldens']}"]
    for title, table in (
        ("Full-size model, device fp32 vs CPU fp32", par.get("full_size_device_vs_cpu_fp32")),
    ):
        if isinstance(table, dict):
            lines += ["", f"## {title}", "", "| output | unit | max | mean |", "|---|---|---|---|"]
            lines += [f"| {k} | {v['unit']} | {v['max']:.3e} | {v['mean']:.3e} |" for k, v in table.items()]
    prec = steps.get("precision", {})
    if prec.get("status") == "ok":
        lines += ["", f"## Half precision vs fp32 ({prec['crops']}, reference {prec['reference']})", ""]
        lines += [
            "| precision | vertices mm mean / max | joints mm mean / max | cam_t mm max |",
            "|---|---|---|---|",
        ]
        for precision in half_precisions():
            table = prec.get(precision)
            if isinstance(table, dict):
                v, j, c = table["vertices"], table["keypoints_3d"], table["cam_t"]
                lines.append(
                    f"| {precision} | {v['mean']:.3f} / {v['max']:.3f} | {j['mean']:.3f} / {j['max']:.3f} "
                    f"| {c['max']:.3f} |"
                )
            else:
                lines.append(f"| {precision} | {table} | | |")
    bench = steps.get("latency", {})
    if bench.get("status") == "ok":
        lines += ["", "## Latency, 1280x720 (ms per frame; mm = deviation from eager fp32)", ""]
        lines += ["| way | hands | crop | reconstruct | post | total | x base | vert mm mean/max |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in bench["rows"]:
            dev = r.get("deviation")
            mm = "-" if not dev else f"{dev['vertex_mean_mm']:.3f} / {dev['vertex_max_mm']:.3f}"
            base = r.get("speedup_vs_baseline")
            s = r["stages_ms"]
            speedup = "-" if base is None else f"{base:.2f}"
            lines.append(
                f"| {r['backend']} | {r['hands']} | {s['crop']:.2f} | {s['reconstruct']:.2f} | "
                f"{s['postprocess']:.2f} | {r['total_ms']:.2f} | {speedup} | {mm} |"
            )
        lines += ["", "| way | load s | compile / capture warm-up s |", "|---|---|---|"]
        lines += [
            f"| {s['backend']} | {s['load_s']:.1f} | {s['warmup_s']:.1f} |" for s in bench["setup_rows"]
        ]
        for name, why in bench.get("skipped", {}).items():
            lines.append(f"\nskipped {name}: {why}")
    lines += ["", f"total {doc.get('elapsed_s')} s; load average at the end: {doc.get('loadavg_end')}", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ entry point
def run(args: argparse.Namespace) -> int:
    import torch

    from wilor_ros.tools.bench import load_average

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    size = args.size or ("full" if cuda else "small")
    out_dir = Path(args.out)
    check = Check(out_dir, args.budget_s)
    if cuda:
        # fp32 means fp32 here: no TF32 in matmuls or convolutions (the fp32 rows are the references)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        check.doc["notes"].append(CPU_NOTE)
        LOG.warning(CPU_NOTE)
    if args.threads:
        torch.set_num_threads(args.threads)
    reference = find_reference(args.reference)
    if reference is None:
        check.doc["notes"].append(
            "parity kit not found: no golden parity; random crops for the precision step"
        )
    check.step("environment", lambda: environment(device))
    models = check.step("models", lambda: make_models(out_dir / "models" / size, size))
    if models is not None:
        model_dir = Path(models["model_dir"])
        check.step("parity", lambda: parity(reference, model_dir, device))
        check.step("precision", lambda: precision_errors(reference, model_dir, device))
        ways = tuple(args.ways) if args.ways else cpu_or_gpu_ways(cuda)
        iterations = args.iterations or (10 if cuda else 2)
        check.step(
            "latency", lambda: latency(model_dir, device, ways, max(check.remaining(), 0.0), iterations)
        )
    check.doc["loadavg_end"] = load_average()
    check.write()
    (out_dir / "gpu_check.md").write_text(markdown(check.doc))
    print(markdown(check.doc))
    print(f"wrote {out_dir / 'gpu_check.json'} and {out_dir / 'gpu_check.md'}")
    failed = [name for name, step in check.doc["steps"].items() if step["status"] != "ok"]
    return 1 if failed else 0


def cpu_or_gpu_ways(cuda: bool) -> tuple[str, ...]:
    if cuda:
        return GPU_WAYS
    from wilor_ros.core.models.cpu_features import bf16_cpu_flags

    # compile is left out on the CPU (minutes per model here; `wilor-ros bench --backends pytorch+compile`)
    return ("pytorch", "baseline-eager") + (("pytorch:bf16",) if bf16_cpu_flags() else ())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install-wheels", help="unpack the listed wheels that do not import yet")
    inst.add_argument("--wheels", type=Path, required=True)
    inst.add_argument("--target", type=Path, required=True)
    go = sub.add_parser("run", help="run the check")
    go.add_argument("--out", default=str(REPO_ROOT / "out" / "gpu_check"))
    go.add_argument("--size", choices=("small", "medium", "full"), help="default: full on CUDA, small on CPU")
    go.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="latency ways start within this")
    go.add_argument("--reference", help="parity kit folder (default: WILOR_REFERENCE or ../shared/reference)")
    go.add_argument(
        "--ways", nargs="+", help="bench specs for the latency step (default: all for the device)"
    )
    go.add_argument("--iterations", type=int, help="timed iterations per row (default 10 on GPU, 2 on CPU)")
    go.add_argument("--threads", type=int, help="CPU threads for torch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "install-wheels":
        args.target.mkdir(parents=True, exist_ok=True)
        for line in install_wheels(args.wheels, args.target):
            print(line)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
