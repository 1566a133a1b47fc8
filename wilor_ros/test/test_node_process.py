"""The node as its own process, as on a robot: started from the command line, fed by a camera
driver in ANOTHER process (DDS transport between processes, not the in-process shortcut)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run `make setup`)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from helpers import MAX_DOMAIN_ID  # noqa: E402

from wilor_ros.ros.parameters import PARAMETER_NAMES  # noqa: E402

TEST_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = TEST_DIR.parent
PROFILE = PACKAGE_DIR / "config" / "fastdds_large_images.xml"
NODE = [sys.executable, "-m", "wilor_ros.ros.node"]


def ros_env(domain: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env.update(extra)
    return env


# ---------------------------------------------------------------------------- start-up
def test_missing_models_print_one_clear_message_and_exit_1(tmp_path):
    result = subprocess.run(
        [*NODE, "--ros-args", "-p", f"model_dir:={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=ros_env(random.randint(1, MAX_DOMAIN_ID)),
    )
    assert result.returncode == 1, result.stderr
    assert "cannot start" in result.stderr
    for name in ("detector.onnx", "wilor.onnx"):
        assert name in result.stderr
    assert "ros2 run wilor_ros wilor-ros export" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_without_starting(flag):
    script = Path(sys.executable).parent / "hand_reconstruction_node"
    command = [str(script)] if script.is_file() else NODE
    result = subprocess.run([*command, flag], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: hand_reconstruction_node")
    for name in PARAMETER_NAMES:
        assert name in result.stdout
    assert "cannot start" not in result.stderr


def test_unknown_argument_is_refused():
    result = subprocess.run([*NODE, "--model-dir", "x"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown argument" in result.stderr


# ---------------------------------------------------------------------------- transport
@pytest.fixture(scope="module")
def models_with_detector(synthetic_model_dir, tmp_path_factory):
    """The small synthetic set plus a synthetic detector (finds nothing, costs what a detector
    costs), so the node runs its own detector on every frame."""
    from wilor_ros.tools.export_detector import make_synthetic_detector

    folder = tmp_path_factory.mktemp("models_with_detector")
    for path in synthetic_model_dir.iterdir():
        (folder / path.name).symlink_to(path)
    make_synthetic_detector(folder)
    return folder


def _diagnostics_values(msg: DiagnosticArray) -> dict[str, float]:
    return {kv.key: float(kv.value) for kv in msg.status[0].values}


def _run_camera_into_node(model_dir: Path, reliability: str, profile: bool, frames: int) -> dict:
    domain = random.randint(1, MAX_DOMAIN_ID)
    extra = {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)} if profile else {}
    node = subprocess.Popen(
        [*NODE, "--ros-args", "-p", f"model_dir:={model_dir}", "-p", "diagnostics_period:=0.5"],
        env=ros_env(domain, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    probe = rclpy.create_node("diagnostics_probe", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    reports: list[dict[str, float]] = []
    probe.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: reports.append(_diagnostics_values(m)), 10
    )

    def spin_until(condition, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not condition():
            executor.spin_once(timeout_sec=0.05)
        return condition()

    try:
        assert spin_until(lambda: len(reports) > 0, 60.0), "the node never reported (did it start?)"
        camera = subprocess.Popen(
            [
                sys.executable,
                str(TEST_DIR / "camera_publisher.py"),
                "--count",
                str(frames),
                "--rate",
                "30",
                "--width",
                "1280",
                "--height",
                "720",
                "--reliability",
                reliability,
            ],
            env=ros_env(domain, **extra),
            stdout=subprocess.PIPE,
            text=True,
        )
        while camera.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        sent = json.loads(camera.stdout.read().strip().splitlines()[-1])["sent"]

        def settled() -> bool:  # two reports in a row with every received frame accounted for
            if len(reports) < 2 or reports[-1]["frames_received"] != reports[-2]["frames_received"]:
                return False
            last = reports[-1]
            return (
                last["frames_processed"] + last["frames_dropped"] + last["frames_skipped"]
                >= last["frames_received"]
            )

        spin_until(settled, 30.0)
        return {"sent": sent, **reports[-1]}
    finally:
        node.terminate()
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
        probe.destroy_node()
        executor.shutdown()
        context.try_shutdown()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("reliability", "profile"),
    [("reliable", False), ("best_effort", True)],
    ids=["reliable-camera-default-transport", "best-effort-camera-with-shm-profile"],
)
def test_720p_30hz_from_another_process_arrives(models_with_detector, reliability, profile):
    """input_qos auto (the default) follows a reliable camera; a best-effort camera with the shipped
    Fast DDS profile gets through too. Every frame sent must reach the node: processed, or dropped
    by its own newest-frame policy (the node is slower than 30 Hz here), never lost in transport."""
    stats = _run_camera_into_node(models_with_detector, reliability, profile, frames=90)
    print(f"cross-process {reliability} profile={profile}: {stats}")
    sent = stats["sent"]
    assert stats["frames_received"] >= 0.95 * sent, stats
    accounted = stats["frames_processed"] + stats["frames_dropped"] + stats["frames_skipped"]
    assert accounted == stats["frames_received"], stats
    assert stats["frames_processed"] > 0 and stats["frames_skipped"] == 0, stats
