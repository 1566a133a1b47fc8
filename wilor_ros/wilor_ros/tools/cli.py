"""``wilor-ros``: the command line of wilor_ros (one sub-command per job)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from wilor_ros.core.backends.registry import BACKEND_CHOICES, BACKENDS, PRECISION_CHOICES
from wilor_ros.core.config import load_config, parse_override
from wilor_ros.core.pipeline_config import PipelineConfig

LOG = logging.getLogger("wilor_ros")

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # the ament package folder (wilor_ros/)
DEFAULT_MODEL_DIR = PACKAGE_DIR / "models"
DEFAULT_OUT_DIR = PACKAGE_DIR.parent / "out"


def _add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="pipeline YAML (PipelineConfig keys; config/pipeline.yaml lists them all with their defaults)",
    )
    parser.add_argument(
        "--model-dir", type=Path, default=None, help=f"model folder (default {DEFAULT_MODEL_DIR})"
    )
    parser.add_argument("--backend", choices=BACKEND_CHOICES, help="reconstructor runtime")
    parser.add_argument("--device", help="cpu | cuda | cuda:N")
    parser.add_argument(
        "--precision", choices=PRECISION_CHOICES, help="what each backend runs: docs/performance.md"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any PipelineConfig key, e.g. --set max_hands=2 (repeatable)",
    )


def pipeline_config_from_args(
    args: argparse.Namespace, fixed: dict[str, object] | None = None
) -> PipelineConfig:
    """The one way every command builds its PipelineConfig: defaults, then ``--config`` YAML, then
    the command's own flags and ``fixed`` choices, then ``--set KEY=VALUE`` overrides."""
    flags: dict[str, object] = {
        "models.model_dir": str(getattr(args, "model_dir", None) or DEFAULT_MODEL_DIR)
    }
    for key in ("backend", "device", "precision"):
        if getattr(args, key, None):
            flags[key] = getattr(args, key)
    flags.update(fixed or {})
    for path, value in map(parse_override, getattr(args, "overrides", None) or []):
        flags[".".join(path)] = value
    return load_config(PipelineConfig, getattr(args, "config", None), flags)


# ---------------------------------------------------------------- commands
def cmd_demo(args: argparse.Namespace) -> int:
    from wilor_ros.core.pipeline import HandPipeline
    from wilor_ros.tools.demo import load_boxes_file, run_demo

    boxes = load_boxes_file(args.boxes) if args.boxes else None
    config = pipeline_config_from_args(args, {"use_detector": False} if boxes is not None else None)
    pipeline = HandPipeline.from_config(config)
    results = run_demo(pipeline, args.inputs, args.out, boxes=boxes, save_obj=args.obj, save_video=args.video)
    hands = sum(len(r.hands) for r in results)
    print(f"{len(results)} frame(s), {hands} hand(s); overlays and results.json in {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from wilor_ros.tools.model_export import export_all

    export_all(
        args.model_dir or DEFAULT_MODEL_DIR,
        skip_detector=args.skip_detector,
        force=args.force,
        external_data=True if args.external_data else None,
    )
    return 0


def cmd_export_detector(args: argparse.Namespace) -> int:
    from wilor_ros.tools.export_detector import export_detector

    out = export_detector(args.weights, args.out, imgsz=args.imgsz)
    print(f"wrote {out}")
    return 0


def cmd_make_synthetic(args: argparse.Namespace) -> int:
    from wilor_ros.tools.synthetic_models import make_synthetic_models

    paths = make_synthetic_models(args.out, size=args.size, seed=args.seed, force=args.force)
    for role, path in paths.items():
        print(f"{role:>20}: {path}")
    return 0


def cmd_demo_main(args: argparse.Namespace) -> int:
    from wilor_ros.tools.main_demo import run_main_demo

    return run_main_demo(model_dir=args.model_dir or DEFAULT_MODEL_DIR, out_dir=args.out)


# ---------------------------------------------------------------- training (tools/train, evaluate)
def _data_entries(specs: list[str]) -> list[dict[str, str]]:
    """``KIND:PATH`` strings -> DatasetEntry mappings (kind: freihand | webdataset | jsonl)."""
    entries = []
    for spec in specs:
        kind, sep, path = spec.partition(":")
        if not sep or not path:
            raise ValueError(f"--data {spec!r}: expected KIND:PATH, e.g. jsonl:data/index.jsonl")
        entries.append({"kind": kind, "path": path})
    return entries


def cmd_train(args: argparse.Namespace) -> int:
    from wilor_ros.core.config import apply_overrides, config_to_dict, from_dict
    from wilor_ros.tools.train.config import TrainConfig
    from wilor_ros.tools.train.trainer import train

    cfg = load_config(
        TrainConfig, args.config, [*args.overrides, *(["data.strict=true"] if args.strict else [])]
    )
    if args.data:
        data = config_to_dict(cfg)
        data["data"]["datasets"] = _data_entries(args.data)
        cfg = from_dict(TrainConfig, apply_overrides(data, []))
    result = train(cfg)
    print(f"step {result.step}; last checkpoint: {result.last_checkpoint}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from wilor_ros.tools.evaluate import evaluate, format_table
    from wilor_ros.tools.train.config import EvalConfig

    overrides = [*args.overrides, *(["strict=true"] if args.strict else [])]
    for key, value in (("checkpoint", args.checkpoint), ("mano_path", args.mano), ("out_json", args.out)):
        if value:
            overrides.append(f"{key}={value}")
    if args.data:
        overrides.append(f"datasets={_data_entries(args.data)}")
    results = evaluate(load_config(EvalConfig, args.config, overrides))
    print(format_table(results))
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    from wilor_ros.tools.train_detector import train_detector

    best = train_detector(
        args.weights,
        args.data,
        args.out,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device or "",
    )
    print(f"wrote {best}; export it with: wilor-ros export-detector {best}")
    return 0


def cmd_eval_temporal(args: argparse.Namespace) -> int:
    import json

    from wilor_ros.core.temporal.filtering import FilterConfig
    from wilor_ros.tools.eval_temporal import eval_temporal, load_npz
    from wilor_ros.tools.record import format_temporal_report, temporal_report_dict

    filter_config = FilterConfig(min_cutoff=args.min_cutoff, beta=args.beta)
    source = Path(args.input)
    if source.suffix.lower() == ".npz":
        sequence = load_npz(source)
    else:
        from wilor_ros.core.pipeline import HandPipeline
        from wilor_ros.core.temporal.temporal_pipeline import TemporalConfig, TemporalHandPipeline
        from wilor_ros.tools.record import record_video

        # raw (unfiltered) tracked output; the report applies the filter itself for comparison
        temporal = TemporalHandPipeline(
            HandPipeline.from_config(pipeline_config_from_args(args)),
            TemporalConfig(filtering=False, detector_skipping=not args.no_skipping),
        )
        try:
            recorder = record_video(temporal, source, max_frames=args.max_frames)
        finally:
            temporal.close()
        sequence = recorder.sequence(args.track)
        if args.save_npz:
            print(f"wrote {recorder.save_npz(args.save_npz, args.track)}")
    report = eval_temporal(sequence, filter_config)
    print(format_temporal_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(temporal_report_dict(report), indent=2))
        print(f"wrote {args.json}")
    return 0


def _add_temporal_commands(sub: argparse._SubParsersAction) -> None:
    evt = sub.add_parser(
        "eval-temporal",
        help="jitter, MPFJE/MPFVE and lag of a video run through the pipeline or a recorded .npz",
    )
    evt.add_argument("input", help="video file, or .npz (stamps, keypoints_3d[, gt_keypoints_3d, ...])")
    evt.add_argument("--json", help="also write the report to this JSON file")
    evt.add_argument("--save-npz", help="video input: record the evaluated track to this .npz")
    evt.add_argument("--track", type=int, help="video input: track id to evaluate (default: longest)")
    evt.add_argument("--max-frames", type=int, help="video input: stop after this many frames")
    evt.add_argument("--no-skipping", action="store_true", help="video input: detector on every frame")
    evt.add_argument("--min-cutoff", type=float, default=1.0, help="One Euro min_cutoff (Hz)")
    evt.add_argument("--beta", type=float, default=20.0, help="One Euro beta (1/m)")
    _add_pipeline_args(evt)
    evt.set_defaults(func=cmd_eval_temporal)


def _add_training_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="fine-tune the reconstructor (docs/training.md; torchrun for DDP)")
    train.add_argument("--config", type=Path, help="TrainConfig YAML, e.g. config/finetune_example.yaml")
    train.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="KIND:PATH",
        help="replace data.datasets (repeatable): freihand:DIR, webdataset:TARS, jsonl:FILE",
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any TrainConfig key, e.g. --set train.steps=100 (repeatable)",
    )
    train.add_argument("--strict", action="store_true", help=STRICT_HELP)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="PA-MPJPE/PA-MPVPE/F-scores/AUC and 2D PCK of a checkpoint per dataset")
    ev.add_argument("--config", type=Path, help="EvalConfig YAML")
    ev.add_argument("--checkpoint", help="wilor_final.ckpt or a checkpoint of wilor-ros train")
    ev.add_argument("--mano", help="MANO_RIGHT.pkl")
    ev.add_argument("--data", action="append", default=[], metavar="KIND:PATH", help="dataset (repeatable)")
    ev.add_argument("--out", help="also write the numbers to this JSON file")
    ev.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ev.add_argument("--strict", action="store_true", help=STRICT_HELP)
    ev.set_defaults(func=cmd_eval)

    det = sub.add_parser("train-detector", help="fine-tune detector.pt on a YOLO dataset (needs ultralytics)")
    det.add_argument("weights", help="detector.pt to start from (or a YOLO model .yaml for scratch)")
    det.add_argument(
        "--data", required=True, type=Path, help="ultralytics dataset YAML, names {0: left, 1: right}"
    )
    det.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR / "detector")
    det.add_argument("--epochs", type=int, default=50)
    det.add_argument("--imgsz", type=int, default=640)
    det.add_argument("--batch", type=int, default=16)
    det.add_argument("--device", help="'' (auto), cpu, 0, 0,1 ...")
    det.set_defaults(func=cmd_train_detector)


# ---------------------------------------------------------------- data check (tools/check_data)
STRICT_HELP = "stop at the first bad sample, naming it (default: skip, count and report bad samples)"


def cmd_check_data(args: argparse.Namespace) -> int:
    """Exit status 0 when every sample is good, 1 when some are bad (the table names them)."""
    from wilor_ros.core.config import from_dict
    from wilor_ros.tools.check_data import check_data
    from wilor_ros.tools.train.config import DatasetEntry

    entries = [from_dict(DatasetEntry, entry) for entry in _data_entries(args.specs)]
    report = check_data(entries, args.rescale, progress=not args.no_progress)
    print(report.format(max_listed=args.list, ranges=True))
    if args.json:
        print(f"wrote {report.write_json(args.json)}")
    return 1 if report.total_bad else 0


def _add_check_data_command(sub: argparse._SubParsersAction) -> None:
    from wilor_ros.tools.train.config import TRAIN_RESCALE_FACTOR

    check = sub.add_parser(
        "check-data",
        help="read every sample of datasets once: bad samples by reason, offending files, value ranges",
    )
    check.add_argument(
        "specs", nargs="+", metavar="KIND:PATH", help="datasets as for train/eval --data: freihand:DIR, ..."
    )
    check.add_argument("--rescale", type=float, default=TRAIN_RESCALE_FACTOR, help="crop rescale factor")
    check.add_argument("--list", type=int, default=10, help="bad samples listed per dataset (default 10)")
    check.add_argument("--json", type=Path, help="also write the full report (every bad sample) to JSON")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    check.set_defaults(func=cmd_check_data)


# ---------------------------------------------------------------- GPU deployment (engines, compare, bench)
def cmd_build_engines(args: argparse.Namespace) -> int:
    from wilor_ros.tools.build_engines import build_engines

    built = build_engines(
        args.model_dir or DEFAULT_MODEL_DIR,
        precision=args.precision,
        max_hands=args.max_hands,
        device=args.device,
        detector=not args.skip_detector,
        rebuild=args.rebuild,
        prune=args.prune,
    )
    for item in built:
        print(f"{item.role:>13}: {item.status} {item.engine}")
    return 0


def cmd_compare_backends(args: argparse.Namespace) -> int:
    from wilor_ros.tools.compare_backends import run_compare

    _, table = run_compare(
        args.a, args.b, args.model_dir or DEFAULT_MODEL_DIR, args.images, args.boxes, args.count, args.device,
        rounds=args.rounds,
    )  # fmt: skip
    print(table)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from wilor_ros.tools.bench import BenchConfig, format_bench_table, run_bench, write_report

    if args.offline:
        return _bench_offline(args)

    if args.weight_loading_latency:
        return _bench_weight_loading(args)
    options: dict = dict(model_size=args.model_size, device=args.device, precision=args.precision)
    options["model_dir"] = str(args.model_dir) if args.model_dir else None
    options["cache_dir"] = str(DEFAULT_OUT_DIR / "bench_models")
    for key in ("backends", "hands", "warmup", "iterations", "threads", "weight_loading"):
        if getattr(args, key) is not None:
            options[key] = tuple(getattr(args, key)) if key in ("backends", "hands") else getattr(args, key)
    options["baseline"] = not args.no_baseline
    options["detector"] = not args.no_detector
    options["accuracy"] = not args.no_accuracy
    if args.image_size:
        options["image_sizes"] = tuple(_parse_image_size(text) for text in args.image_size)
    config = BenchConfig.quick(**options) if args.quick else BenchConfig(**options)
    report = run_bench(config)
    print(format_bench_table(report))
    print(f"wrote {write_report(report, args.json)}")
    if args.detector_skipping:
        _bench_detector_skipping(args)
    return 0


def _parse_image_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise ValueError(f"--image-size must look like 1280x720, got {text!r}")
    return int(width), int(height)


def _bench_weight_loading(args: argparse.Namespace) -> int:
    """memory vs mmap (vs locked) weights: load, first forward, paired steady calls, after a page-out."""
    from wilor_ros.tools.bench import (
        BenchConfig,
        format_weight_loading_table,
        resolve_model_dir,
        run_weight_loading_bench,
        write_report,
    )

    model_dir = args.model_dir or resolve_model_dir(
        BenchConfig(
            model_size=args.model_size, cache_dir=str(DEFAULT_OUT_DIR / "bench_models"), detector=False
        )
    )
    hands = args.hands[0] if args.hands else 1
    report = run_weight_loading_bench(
        model_dir, calls=args.iterations or 10, hands=hands, threads=args.threads
    )
    print(format_weight_loading_table(report))
    print(f"wrote {write_report(report, args.json)}")
    return 0


def _bench_detector_skipping(args: argparse.Namespace) -> None:
    """Frames/s and detector calls per frame with and without tracker-predicted boxes."""
    from wilor_ros.core.pipeline import HandPipeline
    from wilor_ros.tools.bench_temporal import run_skipping_bench
    from wilor_ros.tools.synthetic_models import make_synthetic_models

    model_dir = args.model_dir
    if model_dir is None:  # the synthetic set, with its (real-cost, finds-nothing) detector
        model_dir = DEFAULT_OUT_DIR / "bench_models" / f"skipping-{args.model_size or 'small'}"
        make_synthetic_models(model_dir, size=args.model_size or "small", detector=True)
    config = pipeline_config_from_args(args, {"models.model_dir": str(model_dir), "backend": "onnxruntime"})
    pipeline = HandPipeline.from_config(config)
    _, table = run_skipping_bench(pipeline, Path(model_dir) / "MANO_RIGHT.pkl")
    print("\ndetector skipping (tracker-predicted boxes between detections):")
    print(table)


def _bench_offline(args: argparse.Namespace) -> int:
    """``process`` vs the node's per-frame path on one recorded bag, same pipeline."""
    from wilor_ros.core.pipeline import HandPipeline
    from wilor_ros.tools.bench_offline import format_offline_bench, run_offline_bench
    from wilor_ros.tools.main_demo import reference_dir
    from wilor_ros.tools.synthetic_models import make_synthetic_models

    model_dir = args.model_dir
    if model_dir is None:  # synthetic models have no real detector: boxes are recorded instead
        model_dir = DEFAULT_OUT_DIR / "bench_models" / f"offline-{args.model_size}"
        make_synthetic_models(model_dir, size=args.model_size, detector=False)
    backend = args.backends[0] if args.backends else "onnxruntime"
    config = pipeline_config_from_args(
        args,
        {"models.model_dir": str(model_dir), "backend": backend, "use_detector": args.model_dir is not None},
    )
    pipeline = HandPipeline.from_config(config)
    try:
        result = run_offline_bench(
            pipeline,
            DEFAULT_OUT_DIR / "bench_offline",
            args.offline_frames,
            args.batch_frames,
            reference_dir(),
        )
    finally:
        pipeline.close()
    models = "synthetic " + args.model_size if args.model_dir is None else str(model_dir)
    print(format_offline_bench(result, f"backend {backend} on {config.device}, models {models}"))
    return 0


def _add_gpu_commands(sub: argparse._SubParsersAction) -> None:
    build = sub.add_parser("build-engines", help="build/reuse TensorRT engines for this GPU (needs TensorRT)")
    build.add_argument(
        "--model-dir", type=Path, default=None, help=f"model folder (default {DEFAULT_MODEL_DIR})"
    )
    tensorrt = BACKENDS["tensorrt"]
    build.add_argument("--precision", choices=tensorrt.precisions, default=tensorrt.default_precision)
    build.add_argument("--max-hands", type=int, default=4, help="largest reconstructor batch of the engine")
    build.add_argument("--device", default="cuda", help="cuda | cuda:N")
    build.add_argument("--skip-detector", action="store_true", help="reconstructor engine only")
    build.add_argument("--rebuild", action="store_true", help="rebuild even when a cached engine is current")
    build.add_argument("--prune", action="store_true", help="delete older engines of the same ONNX files")
    build.set_defaults(func=cmd_build_engines)

    cmp_ = sub.add_parser(
        "compare-backends", help="run two backends on the same crops; per-output differences"
    )
    cmp_.add_argument(
        "a",
        help="backend A: runtime[:precision][+compile][+graphs], e.g. pytorch, pytorch:bf16, tensorrt:fp16",
    )
    cmp_.add_argument("b", help="backend B (same syntax)")
    cmp_.add_argument("--model-dir", type=Path, default=None)
    cmp_.add_argument("--images", type=Path, help="image file or folder (with --boxes)")
    cmp_.add_argument("--boxes", type=Path, help="boxes JSON (demo_boxes.json layout)")
    cmp_.add_argument("--count", type=int, default=4, help="random crops when no images are given")
    cmp_.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available)")
    cmp_.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="paired timing rounds over all crops (A and B alternate; default 1)",
    )
    cmp_.set_defaults(func=cmd_compare_backends)

    bench = sub.add_parser("bench", help="per-stage latency, FPS and memory of every available backend")
    bench.add_argument("--model-dir", type=Path, default=None, help="real models (default: synthetic set)")
    bench.add_argument("--model-size", choices=("small", "medium", "full"), default="small")
    bench.add_argument(
        "--backends",
        nargs="+",
        help="ways to run the reconstructor: runtime[:precision][+compile][+graphs], e.g. pytorch "
        "pytorch:bf16 pytorch+compile onnxruntime tensorrt:fp16 pytorch:fp16+graphs "
        f"(default: {' '.join(BACKEND_CHOICES)})",
    )
    bench.add_argument("--hands", nargs="+", type=int, help="hand counts (default 1 2 4)")
    bench.add_argument("--warmup", type=int)
    bench.add_argument("--iterations", type=int)
    bench.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available)")
    bench.add_argument(
        "--precision", choices=PRECISION_CHOICES, help="for ways without one (default: each runtime's own)"
    )
    bench.add_argument("--threads", type=int, help="CPU threads for torch / ONNX Runtime")
    bench.add_argument("--no-baseline", action="store_true", help="skip the official-demo-style baseline")
    bench.add_argument("--no-detector", action="store_true", help="skip the detector timing")
    bench.add_argument("--quick", action="store_true", help="CI size: 640x480, 1-2 hands, 2 iterations")
    bench.add_argument(
        "--weight-loading",
        choices=("memory", "mmap"),
        help="how pytorch rows hold the weights (default memory)",
    )
    bench.add_argument("--no-accuracy", action="store_true", help="skip the mm deviation from fp32 PyTorch")
    bench.add_argument(
        "--image-size",
        action="append",
        metavar="WxH",
        help="frame size (repeatable; default 640x480 1280x720)",
    )
    bench.add_argument(
        "--weight-loading-latency",
        action="store_true",
        help="instead: memory vs mmap vs locked weights (load, first forward, paired steady calls "
        "(--iterations, default 10) of --hands[0] hands, one call after paging the weights out)",
    )
    bench.add_argument(
        "--detector-skipping",
        action="store_true",
        help="also measure detector skipping (tracker-predicted boxes) on a rendered moving hand",
    )
    bench.add_argument("--json", type=Path, default=DEFAULT_OUT_DIR / "bench.json", help="JSON report path")
    bench.add_argument(
        "--offline",
        action="store_true",
        help="instead: frames/s of `wilor-ros process` vs the node's per-frame path on one recorded bag",
    )
    bench.add_argument("--offline-frames", type=int, default=60, help="--offline: frames in the bag")
    bench.add_argument("--batch-frames", type=int, default=8, help="--offline: process's frames per call")
    bench.set_defaults(func=cmd_bench)


# ---------------------------------------------------------------- offline processing (wilor_ros/offline)
def cmd_process(args: argparse.Namespace) -> int:
    from wilor_ros.core.pipeline import HandPipeline
    from wilor_ros.offline.runner import ProcessConfig, process

    overrides = list(args.process_overrides)
    for key in (
        "image_topic",
        "camera_info_topic",
        "depth_topic",
        "boxes_topic",
        "frame_id",
        "storage",
        "smoothing",
    ):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    for key in ("fps", "batch_frames", "max_gap"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    if args.camera_info is not None:
        overrides.append(f"camera_info_file={args.camera_info}")
    if args.video is not None:
        overrides.append(f"video={args.video}")
    if args.copy_topics:
        overrides.append(f"copy_topics={list(args.copy_topics)}")
    config = load_config(ProcessConfig, args.process_config, overrides)
    boxes = None
    if args.boxes:
        from wilor_ros.tools.demo import load_boxes_file

        boxes = load_boxes_file(args.boxes)
    outside = boxes is not None or bool(config.boxes_topic)  # boxes come from outside: no detector
    pipeline_config = pipeline_config_from_args(args, {"use_detector": False} if outside else None)
    out = args.out or DEFAULT_OUT_DIR / "process" / Path(args.input).stem
    pipeline = HandPipeline.from_config(pipeline_config)
    try:
        summary = process(args.input, out, config, pipeline, boxes=boxes, show_progress=not args.quiet)
    except KeyboardInterrupt:
        print(
            "wilor-ros process: interrupted: no output was written; the input is untouched", file=sys.stderr
        )
        return 130
    finally:
        pipeline.close()
    print(summary.format())
    return 0


def _add_process_command(sub: argparse._SubParsersAction) -> None:
    proc = sub.add_parser(
        "process",
        help="a rosbag2 bag (sqlite3/MCAP), video or image folder -> output bag, hands.npz, overlay video",
        description="Offline processing of a recording with the whole sequence in view (docs/offline.md).",
    )
    proc.add_argument("input", help="rosbag2 folder, .db3 or .mcap file; video file; or image folder")
    proc.add_argument("--out", type=Path, help="output folder (default out/process/<input name>)")
    proc.add_argument("--image-topic", help="bag: image topic, raw or compressed (default: the only one)")
    proc.add_argument("--camera-info-topic", help="bag: camera_info topic (default: beside the image topic)")
    proc.add_argument("--depth-topic", help="bag: aligned depth image topic (16UC1 mm or 32FC1 m)")
    proc.add_argument(
        "--boxes-topic", help="bag: wilor_msgs/HandDetectionArray topic used instead of the detector"
    )
    proc.add_argument(
        "--boxes",
        type=Path,
        help="JSON of hand boxes per frame (demo_boxes.json layout) instead of the detector",
    )
    proc.add_argument(
        "--camera-info", type=Path, help="video/folder: camera calibration YAML (ROS camera calibrator)"
    )
    proc.add_argument("--frame-id", help="video/folder: frame_id of the outputs (default camera)")
    proc.add_argument("--fps", type=float, help="image folder: frame rate for the stamps (default 30)")
    proc.add_argument(
        "--storage", choices=("mcap", "sqlite3"), help="output bag storage (default: the input's)"
    )
    proc.add_argument(
        "--copy-topics", nargs="+", metavar="TOPIC", help="input topics copied into the output bag"
    )
    proc.add_argument("--video", type=Path, help="also write the overlay (mesh, skeleton, ids) to this MP4")
    proc.add_argument("--batch-frames", type=int, help="frames per reconstructor/detector call (default 8)")
    proc.add_argument("--max-gap", type=int, help="fill track gaps of up to this many frames (default 5)")
    proc.add_argument("--smoothing", choices=("none", "causal", "offline"), help="default offline (zero-lag)")
    proc.add_argument("--process-config", type=Path, help="YAML of ProcessConfig keys")
    proc.add_argument(
        "--process-set",
        dest="process_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any ProcessConfig key, e.g. --process-set smoothing_cutoff_hz=2 (repeatable)",
    )
    proc.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_pipeline_args(proc)
    proc.set_defaults(func=cmd_process)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wilor-ros",
        description="Real-time 3D hand reconstruction (WiLoR) for ROS 2: tools and demos.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="images / folder / video / camera index -> overlays, .obj, JSON")
    demo.add_argument("inputs", nargs="+", help="image files, folders, video files or a camera index (0)")
    demo.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR / "demo", help="output folder")
    demo.add_argument("--boxes", type=Path, help="JSON of given hand boxes per image (skips the detector)")
    demo.add_argument("--obj", action="store_true", help="also write one .obj mesh per hand")
    demo.add_argument("--video", action="store_true", help="write overlay.mp4 instead of PNG files")
    _add_pipeline_args(demo)
    demo.set_defaults(func=cmd_demo)

    export = sub.add_parser("export", help="detector.pt + wilor_final.ckpt + MANO_RIGHT.pkl -> ONNX files")
    export.add_argument(
        "--model-dir", type=Path, default=None, help=f"model folder (default {DEFAULT_MODEL_DIR})"
    )
    export.add_argument("--skip-detector", action="store_true", help="export the reconstructor only")
    export.add_argument("--force", action="store_true", help="re-export even when the ONNX files are newer")
    export.add_argument(
        "--external-data",
        action="store_true",
        help="always keep the reconstructor weights in wilor.onnx.data (default: only above 1 GiB)",
    )
    export.set_defaults(func=cmd_export)

    export_det = sub.add_parser(
        "export-detector", help="ultralytics detector .pt -> ONNX (needs ultralytics)"
    )
    export_det.add_argument("weights", type=Path, help="detector.pt")
    export_det.add_argument("--out", type=Path, default=None, help="output .onnx (default: beside the .pt)")
    export_det.add_argument("--imgsz", type=int, default=640)
    export_det.set_defaults(func=cmd_export_detector)

    synth = sub.add_parser(
        "make-synthetic-models",
        help="synthetic MANO, reconstructor and detector so every command runs unlicensed",
    )
    synth.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR / "synthetic")
    synth.add_argument(
        "--size",
        choices=("small", "medium", "full"),
        default="medium",
        help="reconstructor size (full = the released architecture, ~2.5 GB)",
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--force", action="store_true", help="overwrite existing files")
    synth.set_defaults(func=cmd_make_synthetic)

    main_demo = sub.add_parser(
        "demo-main", help="what `make demo` runs: the main job, real or synthetic models"
    )
    main_demo.add_argument("--model-dir", type=Path, default=None)
    main_demo.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR / "demo")
    main_demo.set_defaults(func=cmd_demo_main)
    _add_training_commands(sub)
    _add_check_data_command(sub)
    _add_temporal_commands(sub)
    _add_gpu_commands(sub)
    _add_process_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        # user-facing errors: the message says what to do; no traceback unless --verbose
        if args.verbose:
            raise
        print(f"wilor-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
