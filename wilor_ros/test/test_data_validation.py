"""Bad training/evaluation data: datasets in every supported format (JSONL, FreiHAND, webdataset
shards) with good rendered hands plus one sample each of NaN betas, NaN joints, NaN box, out-of-range
values, a corrupt image and a missing image. Training (with DataLoader workers) and evaluation finish on
the good samples and name every bad one; ``--strict`` stops at the first; ``check-data`` reports them
all. Also: a diverging run stops naming the step without writing a checkpoint, checkpoints holding
NaN are neither written nor loaded, and TensorBoard keeps the resume step's points.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import (
    _render,
    encode,
    freihand_annotations,
    jsonl_entry,
    small_config,
    tar_hand,
    write_freihand_files,
    write_shard,
)

from wilor_ros.core.models.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from wilor_ros.core.models.wilor import ReconstructorConfig
from wilor_ros.core.types import Side
from wilor_ros.tools import cli
from wilor_ros.tools.check_data import check_data
from wilor_ros.tools.synthetic_checkpoint import make_synthetic_checkpoint
from wilor_ros.tools.synthetic_mano import make_synthetic_mano
from wilor_ros.tools.train.config import DatasetEntry
from wilor_ros.tools.train.datasets import read_dataset
from wilor_ros.tools.train.trainer import train
from wilor_ros.tools.train.validation import (
    CORRUPT_IMAGE,
    MISSING_IMAGE,
    NON_FINITE,
    OUT_OF_RANGE,
    BadSampleError,
)

torch.set_num_threads(2)

NUM_GOOD = 4
CORRUPT_BYTES = b"\xff\xd8\xff\xe0 this is not a JPEG or PNG " * 8
MM_PER_M = 1000.0


def _nan_at(values: list, *index: int) -> list:
    out = np.array(values, np.float64)
    out[index] = np.nan
    return out.tolist()


# ------------------------------------------------------------------------------ bad datasets
def _jsonl(folder: Path, good: list) -> tuple[Path, dict[int, tuple[str, str]]]:
    """Good hands, then one bad sample of each kind. Returns the index and {index: (reason, file)}."""
    folder.mkdir(parents=True)
    image, lab = good[0]
    entries, expected = [], {}
    for i, (img, labels) in enumerate(good):
        (folder / f"{i:03d}.png").write_bytes(encode(img))
        entries.append(jsonl_entry(labels, f"{i:03d}.png"))

    def bad(reason: str, entry: dict, image_bytes: bytes | None = None) -> None:
        name = f"{len(entries):03d}.png"
        if image_bytes is not None:
            (folder / name).write_bytes(image_bytes)
        entry["image"] = name
        expected[len(entries)] = (reason, str(folder / name))
        entries.append(entry)

    base = jsonl_entry(lab, "")
    bad(
        NON_FINITE,
        {**base, "mano": {**lab["mano"], "betas": _nan_at(lab["mano"]["betas"], 3)}},
        encode(image),
    )
    bad(NON_FINITE, {**base, "keypoints_3d": _nan_at(lab["keypoints_3d"], 5, 1)}, encode(image))
    bad(NON_FINITE, {**base, "box": _nan_at(lab["box"], 2)}, encode(image))
    millimetres = (np.asarray(lab["keypoints_3d"]) * MM_PER_M).tolist()
    bad(OUT_OF_RANGE, {**base, "keypoints_3d": millimetres}, encode(image))
    bad(CORRUPT_IMAGE, dict(base), CORRUPT_BYTES)
    bad(MISSING_IMAGE, dict(base))  # no file written
    outside = np.add(lab["box"], [1000.0, 0.0, 1000.0, 0.0]).tolist()
    bad(OUT_OF_RANGE, {**base, "box": outside}, encode(image))  # box beyond the image's right edge
    index = folder / "index.jsonl"
    index.write_text("".join(json.dumps(e) + "\n" for e in entries))  # json writes NaN as NaN
    return index, expected


def _freihand(folder: Path, good: list) -> tuple[Path, dict[int, tuple[str, str]]]:
    rights = [(img, lab) for img, lab in good if lab["side"] == "right"]
    image, lab = rights[0]
    labels = [lab for _, lab in rights]
    images = {i: encode(img, ".jpg") for i, (img, _) in enumerate(rights)}
    kinds = [
        (NON_FINITE, "betas", {**lab, "mano": {**lab["mano"], "betas": _nan_at(lab["mano"]["betas"], 0)}}),
        (NON_FINITE, "xyz", {**lab, "keypoints_3d": _nan_at(lab["keypoints_3d"], 5, 1)}),
        # FreiHAND has no boxes: the box is that of the joints projected with K, so a NaN in K
        (NON_FINITE, "K", {**lab, "K": _nan_at(lab["K"], 0, 0)}),
        (
            OUT_OF_RANGE,
            "span",
            {**lab, "keypoints_3d": (np.asarray(lab["keypoints_3d"]) * MM_PER_M).tolist()},
        ),
        (MISSING_IMAGE, "", lab),
        (CORRUPT_IMAGE, "", lab),
    ]
    expected = {}
    for reason, _, labels_i in kinds:
        number = len(labels)
        labels.append(labels_i)
        expected[number] = (reason, str(folder / "training" / "rgb" / f"{number:08d}.jpg"))
        if reason != MISSING_IMAGE:
            images[number] = CORRUPT_BYTES if reason == CORRUPT_IMAGE else encode(image, ".jpg")
    return write_freihand_files(folder, images, freihand_annotations(labels)), expected


def _webdataset(path: Path, good: list) -> tuple[Path, dict[int, tuple[str, str]]]:
    image, lab = good[0]
    samples = [
        {"jpg": encode(img, ".jpg"), "data.pyd": pickle.dumps([tar_hand(labels)])} for img, labels in good
    ]
    hand = tar_hand(lab)
    kinds = [
        (
            NON_FINITE,
            {**hand, "betas": np.where(np.arange(10) == 4, np.nan, hand["betas"]).astype(np.float32)},
        ),
        (NON_FINITE, {**hand, "keypoints_3d": np.where(np.arange(4) == 2, np.nan, hand["keypoints_3d"])}),
        (NON_FINITE, {**hand, "center": np.array([np.nan, 60.0], np.float32)}),
        (OUT_OF_RANGE, {**hand, "betas": np.full(10, 50.0, np.float32)}),
        (CORRUPT_IMAGE, hand),
        (MISSING_IMAGE, hand),
    ]
    expected = {}
    for reason, hand_i in kinds:
        members = {"data.pyd": pickle.dumps([hand_i])}
        if reason != MISSING_IMAGE:
            members["jpg"] = CORRUPT_BYTES if reason == CORRUPT_IMAGE else encode(image, ".jpg")
        member = f"s{len(samples):04d}.{'data.pyd' if reason == MISSING_IMAGE else 'jpg'}"
        expected[len(samples)] = (reason, f"{path}:{member}")
        samples.append(members)
    return write_shard(path, samples), expected


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad_data")
    mano = make_synthetic_mano(root / "MANO_RIGHT.pkl")
    ckpt = make_synthetic_checkpoint(root / "small.ckpt", ReconstructorConfig.small(), mano)
    good = [_render(str(mano), i, Side.LEFT if i == 2 else Side.RIGHT) for i in range(NUM_GOOD)]
    jsonl, jsonl_bad = _jsonl(root / "jsonl", good)
    frei, frei_bad = _freihand(root / "frei", good)
    wds, wds_bad = _webdataset(root / "wds" / "000.tar", good)
    entries = {
        "jsonl": DatasetEntry(kind="jsonl", path=str(jsonl)),
        "freihand": DatasetEntry(kind="freihand", path=str(frei)),
        "webdataset": DatasetEntry(kind="webdataset", path=str(wds)),
    }
    clean = root / "clean"
    clean.mkdir()
    lines = []
    for i, (img, labels) in enumerate(good):
        (clean / f"{i:03d}.png").write_bytes(encode(img))
        lines.append(json.dumps(jsonl_entry(labels, f"{i:03d}.png")))
    (clean / "index.jsonl").write_text("\n".join(lines) + "\n")
    return {
        "root": root,
        "mano": str(mano),
        "ckpt": str(ckpt),
        "entries": entries,
        "expected": {"jsonl": jsonl_bad, "freihand": frei_bad, "webdataset": wds_bad},
        "good": {"jsonl": NUM_GOOD, "freihand": 3, "webdataset": NUM_GOOD},
        "clean": DatasetEntry(kind="jsonl", path=str(clean / "index.jsonl")),
    }


def _specs(data: dict) -> list[str]:
    return [f"{e.kind}:{e.path}" for e in data["entries"].values()]


def _bad_by_dataset(report: dict) -> dict[str, dict[int, tuple[str, str]]]:
    """{dataset kind: {index: (reason, file)}} from a report's JSON form."""
    return {
        d["name"].split(":")[0]: {b["index"]: (b["reason"], b["file"]) for b in d["bad_samples"]}
        for d in report["datasets"]
    }


def _train_args(data: dict, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--set", f"model.init_checkpoint={data['ckpt']}",
        "--set", f"model.mano_path={data['mano']}",
        "--set", f"train.out_dir={out}",
        "--set", "train.progress=false",
        "--set", "data.freihand_pose_mean_relative=false",
        *extra,
    ]  # fmt: skip


# ------------------------------------------------------------------------------ reading and check-data
@pytest.mark.parametrize("kind", ["jsonl", "freihand", "webdataset"])
def test_check_data_names_every_bad_sample(data, kind):
    report = check_data([data["entries"][kind]], rescale=2.5, progress=False)
    (tally,) = report.datasets.values()
    expected = data["expected"][kind]
    assert tally.samples == data["good"][kind] + len(expected)
    assert {i: (b.reason, b.file) for i, b in tally.bad.items()} == expected
    details = {i: b.detail for i, b in tally.bad.items()}
    first = min(expected)
    assert "betas" in details[first]  # the NaN-betas sample says which field
    assert "NaN" in details[first + 1] and "NaN" in details[first + 2]
    assert tally.ranges.ranges["hand span m"][1] < 0.5  # only the good samples' values


def test_check_data_cli_prints_tables_and_exits_1(data, tmp_path, capsys):
    out = tmp_path / "check.json"
    code = cli.main(["check-data", *_specs(data), "--json", str(out), "--no-progress"])
    assert code == 1
    text = capsys.readouterr().out
    for kind, expected in data["expected"].items():
        samples = data["good"][kind] + len(expected)
        assert f"{data['entries'][kind].label}: {samples} sample(s), {len(expected)} bad" in text
        for index, (reason, file) in expected.items():
            assert f"#{index} {file}: {reason}" in text
    assert "value ranges of the good samples" in text and "betas" in text
    assert _bad_by_dataset(json.loads(out.read_text())) == data["expected"]
    assert cli.main(["check-data", f"jsonl:{data['clean'].path}", "--no-progress"]) == 0


@pytest.mark.parametrize("kind", ["jsonl", "freihand", "webdataset"])
def test_strict_reading_stops_at_the_first_bad_sample(data, kind):
    first = min(data["expected"][kind])
    reason, file = data["expected"][kind][first]
    with pytest.raises(BadSampleError, match=f"#{first} ") as info:
        read_dataset(data["entries"][kind], rescale=2.5, strict=True)
    assert info.value.bad.file == file and info.value.bad.reason == reason


# ------------------------------------------------------------------------------ training
def test_training_with_workers_skips_and_names_every_bad_sample(data, tmp_path, capfd):
    """Default-style DataLoader workers (2): corrupt images are found in the workers, skipped, counted
    and named in the summary and in data_report.json beside the checkpoint; no worker traceback."""
    out = tmp_path / "run"
    args = [f"--data={spec}" for spec in _specs(data)]
    extra = ["--set", "train.steps=3", "--set", "train.batch_size=16", "--set", "data.num_workers=2"]
    code = cli.main(_train_args(data, out, *args, *extra))
    captured = capfd.readouterr()
    assert code == 0, captured.err[-3000:]
    assert "Traceback" not in captured.err + captured.out
    report = json.loads((out / "checkpoints" / "data_report.json").read_text())
    assert report["step"] == 3
    assert _bad_by_dataset(report) == data["expected"]
    for expected in data["expected"].values():
        for index, (reason, file) in expected.items():
            assert f"#{index} {file}: {reason}" in captured.err
    # the decode-time failures were drawn, skipped and counted
    assert sum(d["skipped_draws"] for d in report["datasets"]) >= 3
    checkpoint = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(t).all() for t in checkpoint.state_dict.values() if t.is_floating_point())


def test_strict_training_and_eval_fail_on_the_first_bad_sample(data, tmp_path, capfd):
    jsonl = data["entries"]["jsonl"]
    first = min(data["expected"]["jsonl"])
    code = cli.main(_train_args(data, tmp_path / "strict", f"--data=jsonl:{jsonl.path}", "--strict"))
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"#{first} ({data['expected']['jsonl'][first][1]})" in err and "strict" in err
    assert not (tmp_path / "strict" / "checkpoints").exists()

    code = cli.main(
        ["eval", "--checkpoint", data["ckpt"], "--mano", data["mano"], "--data", f"jsonl:{jsonl.path}",
         "--set", "device=cpu", "--strict"]
    )  # fmt: skip
    err = capfd.readouterr().err
    assert code == 2 and f"#{first} " in err and "Traceback" not in err


def test_strict_training_stops_at_a_corrupt_image_found_in_a_worker(data, tmp_path, capfd):
    """A bad image is only found when drawn: the strict error then names it (raised in the main
    process, not as a worker traceback)."""
    folder = Path(data["entries"]["jsonl"].path).parent
    lines = (folder / "index.jsonl").read_text().splitlines()
    corrupt = next(i for i, (reason, _) in data["expected"]["jsonl"].items() if reason == CORRUPT_IMAGE)
    index = folder / "good_and_corrupt.jsonl"
    index.write_text(f"{lines[0]}\n{lines[corrupt]}\n")
    extra = ["--set", "train.steps=4", "--set", "train.batch_size=4", "--set", "data.num_workers=2"]
    code = cli.main(_train_args(data, tmp_path / "run", f"--data=jsonl:{index}", "--strict", *extra))
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"#1 ({folder / f'{corrupt:03d}.png'}): corrupt-image" in err


def test_diverging_training_stops_naming_the_step_and_writes_no_checkpoint(data, tmp_path, capfd):
    """lr 1e30: the first step's update blows the weights up, the next forward pass gives NaN/inf."""
    out = tmp_path / "nan"
    extra = ["--set", "train.steps=4", "--set", "train.batch_size=2", "--set", "optim.lr=1e30"]
    extra += ["--set", "data.num_workers=0", "--set", "train.checkpoint_every=1"]
    code = cli.main(_train_args(data, out, f"--data=jsonl:{data['clean'].path}", *extra))
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "training stopped at step 2: non-finite loss" in err
    assert "jsonl:index.jsonl #" in err and str(Path(data["clean"].path).parent) in err
    # step 1 was finite and saved; nothing of step 2 exists
    assert sorted(p.name for p in (out / "checkpoints").glob("*.ckpt")) == ["last.ckpt", "step_0000001.ckpt"]


def test_checkpoints_with_non_finite_tensors_are_never_written_nor_loaded(data, tmp_path):
    from wilor_ros.core.models.reconstructor import load_reconstructor

    state = dict(read_checkpoint(data["ckpt"]).state_dict)
    name = next(k for k in state if k.startswith("refine_net.") and state[k].is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    target = tmp_path / "nan.ckpt"
    with pytest.raises(CheckpointError, match=f"tensor 'state_dict.{name}' holds 1 NaN"):
        write_checkpoint(target, state, ReconstructorConfig.small(), synthetic=True)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": state}, foreign)  # written by torch itself, not through our writer
    with pytest.raises(CheckpointError, match=f"tensor '{name}' holds 1 NaN"):
        load_reconstructor(foreign, data["mano"])


# ------------------------------------------------------------------------------ evaluation
def test_eval_skips_and_reports_every_bad_sample(data, tmp_path, capfd):
    out = tmp_path / "eval.json"
    code = cli.main(
        ["eval", "--checkpoint", data["ckpt"], "--mano", data["mano"], "--out", str(out),
         "--set", "device=cpu", "--set", "freihand_pose_mean_relative=false",
         *[f"--data={spec}" for spec in _specs(data)]]
    )  # fmt: skip
    err = capfd.readouterr().err
    assert code == 0, err[-3000:]
    report = json.loads(out.read_text())
    assert _bad_by_dataset(report["data"]) == data["expected"]
    for metrics in report["datasets"]:
        kind = metrics["name"].split(":")[0]
        assert metrics["num_hands"] == data["good"][kind] and metrics["pa_mpjpe_mm"] is not None
    for expected in data["expected"].values():
        for index, (reason, file) in expected.items():
            assert f"#{index} {file}: {reason}" in err


# ------------------------------------------------------------------------------ TensorBoard
def test_tensorboard_keeps_the_resume_step_points(data, tmp_path):
    """2 steps, resume, 2 more: every step 1..4 has its point once, step 2 with the first run's value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    first = small_config(data, [data["clean"]], out, steps=4, checkpoint_every=2, log_every=1)
    half = train(first, max_steps=2)
    resumed = small_config(
        data, [data["clean"]], out, steps=4, checkpoint_every=2, log_every=1, resume=half.last_checkpoint
    )
    rest = train(resumed)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    points = events.Scalars("train/loss")
    assert [p.step for p in points] == [1, 2, 3, 4]
    logged = [h["loss"] for h in half.history + rest.history]
    assert [p.value for p in points] == pytest.approx(logged, rel=1e-6)
