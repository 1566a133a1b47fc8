"""A stand-in camera driver for the cross-process tests: publishes rgb8 frames from its own
process (as a real driver does) and prints a JSON line with how many it sent.

    python camera_publisher.py --count 90 --rate 30 --width 1280 --height 720 --reliability reliable

The DDS domain comes from ROS_DOMAIN_ID; a Fast DDS profile from FASTDDS_DEFAULT_PROFILES_FILE.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=90)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--topic", default="image")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds after the first match")
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node("fake_camera")
    reliability = (
        ReliabilityPolicy.RELIABLE if args.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    )
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=reliability)
    publisher = node.create_publisher(Image, args.topic, qos)
    deadline = time.monotonic() + 30.0
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    # the subscriber may re-subscribe once it has seen this publisher's QoS (input_qos auto)
    time.sleep(args.settle)
    pixels = np.random.default_rng(0).integers(0, 255, args.height * args.width * 3, dtype=np.uint8)
    msg = Image(
        height=args.height, width=args.width, encoding="rgb8", step=args.width * 3, data=pixels.tobytes()
    )
    msg.header.frame_id = "camera_color_optical_frame"
    start = time.monotonic()
    for index in range(args.count):
        while time.monotonic() < start + index / args.rate:
            time.sleep(0.001)
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
    time.sleep(1.0)  # let the last frames go out before the participant disappears
    print(json.dumps({"sent": args.count, "matched": publisher.get_subscription_count()}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
