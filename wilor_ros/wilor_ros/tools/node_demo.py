"""Run ``hand_reconstruction_node`` end to end in-process on sample images and show what it
published (part of ``make demo``): images go in on ``image`` (plus ``hand_boxes`` when the boxes
come from a file), and HandMeshArray, /tf, markers and debug images are recorded."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from wilor_ros.core.types import HandDetection

FRAME_ID = "camera_color_optical_frame"


def run_node_demo(
    model_dir: Path,
    images: list[Path],
    out_dir: Path,
    boxes: dict[str, list[HandDetection]] | None,
    backend: str = "onnxruntime",
    timeout: float = 30.0,
) -> list[dict]:
    """Publish each image to a fresh node and return one summary row per image."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage
    from visualization_msgs.msg import MarkerArray

    from wilor_msgs.msg import HandDetection as HandDetectionMsg
    from wilor_msgs.msg import HandDetectionArray, HandMeshArray
    from wilor_ros.ros.image_conversion import image_to_rgb, numpy_to_image
    from wilor_ros.ros.node import HandReconstructionNode

    out_dir.mkdir(parents=True, exist_ok=True)
    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ.get("WILOR_DEMO_DOMAIN", 77)))
    params = {
        "model_dir": str(model_dir),
        "backend": backend,
        "use_external_boxes": boxes is not None,
        "max_hands": 8,
    }
    node = HandReconstructionNode(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )
    probe = rclpy.create_node("wilor_demo_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    hands: list[HandMeshArray] = []
    tf: list[TFMessage] = []
    markers: list[MarkerArray] = []
    debug: list[Image] = []
    probe.create_subscription(HandMeshArray, "hands", hands.append, 10)
    probe.create_subscription(TFMessage, "/tf", tf.append, 100)
    probe.create_subscription(MarkerArray, "markers", markers.append, 10)
    probe.create_subscription(Image, "debug_image", debug.append, qos_profile_sensor_data)
    image_pub = probe.create_publisher(Image, "image", qos_profile_sensor_data)
    boxes_pub = probe.create_publisher(HandDetectionArray, "hand_boxes", 10)

    def spin_until(condition: Callable[[], object], seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not condition():
            executor.spin_once(timeout_sec=0.02)
        return condition()

    def by_stamp(messages: list, stamp: object) -> object | None:
        return next((m for m in messages if m.header.stamp == stamp), None)

    rows = []
    try:
        spin_until(
            lambda: (
                image_pub.get_subscription_count() > 0 and node.outputs.debug.get_subscription_count() > 0
            ),
            5.0,
        )
        for path in images:
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            header = Header(frame_id=FRAME_ID)
            header.stamp = node.get_clock().now().to_msg()
            if boxes is not None:
                msg = HandDetectionArray(header=header)
                for det in boxes.get(path.name, []):
                    msg.detections.append(
                        HandDetectionMsg(box=det.box, side=int(det.side), score=float(det.score))
                    )
                boxes_pub.publish(msg)
            tf_before, markers_before = len(tf), len(markers)
            image_pub.publish(numpy_to_image(rgb, "rgb8", header))
            # the next image goes out only once this one's results are in (or the wait gave up):
            # outputs are paired with their input by stamp, never by arrival order
            stamp = header.stamp
            spin_until(lambda s=stamp: by_stamp(hands, s) and by_stamp(debug, s), timeout)
            spin_until(lambda: False, 0.1)  # let TF and markers arrive
            result = by_stamp(hands, header.stamp)
            overlay_msg = by_stamp(debug, header.stamp)
            if overlay_msg is not None:
                overlay = image_to_rgb(overlay_msg)
                cv2.imwrite(
                    str(out_dir / f"{path.stem}_debug_image.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)
                )
            new_tf = [t for m in tf[tf_before:] for t in m.transforms if t.header.stamp == header.stamp]
            rows.append(
                {
                    "image": path.name,
                    "stamp_equal": result is not None,
                    "debug_image": overlay_msg is not None,
                    "hands": len(result.hands) if result else 0,
                    "sides": " ".join("left" if h.side == 0 else "right" for h in result.hands)
                    if result
                    else "",
                    "tf_frames": len(new_tf),
                    "marker_msgs": sum(
                        1
                        for m in markers[markers_before:]
                        if m.markers and m.markers[0].header.stamp == header.stamp
                    ),
                    "wrist_xyz_m": [
                        np.round(np.asarray(h.keypoints_3d[:3]), 2).tolist()
                        for h in (result.hands if result else [])
                    ],
                }
            )
        rows.append({"statistics": node.statistics()})
    finally:
        executor.remove_node(node)
        executor.remove_node(probe)
        node.destroy_node()
        probe.destroy_node()
        executor.shutdown()
        rclpy.shutdown(context=context)
    return rows


def print_node_rows(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="hand_reconstruction_node: what it published per input image")
    for column in (
        "image",
        "result with its stamp",
        "debug image",
        "hands",
        "sides",
        "TF frames",
        "marker msgs",
    ):
        table.add_column(column)
    stats = {}
    for row in rows:
        if "statistics" in row:
            stats = row["statistics"]
            continue
        table.add_row(
            row["image"],
            str(row["stamp_equal"]),
            str(row["debug_image"]),
            str(row["hands"]),
            row["sides"],
            str(row["tf_frames"]),
            str(row["marker_msgs"]),
        )
    Console().print(table)
    if stats:
        print("node statistics: " + ", ".join(f"{k}={v:.1f}" for k, v in stats.items()))
