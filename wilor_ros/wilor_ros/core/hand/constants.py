"""Named constants of the WiLoR model, the MANO hand and the joint conventions.

Values are facts of the official model (see docs/model.md and the parity kit's SPEC.md).
"""

from __future__ import annotations

# ---------------------------------------------------------------- network input
CROP_SIZE = 256  # the square crop fed to the network (pixels)
# The ViT sees only columns [CROP_WIDTH_TRIM, CROP_SIZE - CROP_WIDTH_TRIM): 256 x 192.
CROP_WIDTH_TRIM = 32
BBOX_ASPECT_W, BBOX_ASPECT_H = 192, 256  # MODEL.BBOX_SHAPE (w, h): boxes widened to 3:4
IMAGE_MEAN = (0.485, 0.456, 0.406)  # ImageNet, RGB, on [0, 1] pixel values
IMAGE_STD = (0.229, 0.224, 0.225)
FOCAL_LENGTH = 5000.0  # EXTRA.FOCAL_LENGTH: virtual focal of the 256-pixel crop camera
# Box rescale factor: the official demo passes 2.0; its dataset class defaults to 2.5.
DEFAULT_RESCALE_FACTOR = 2.0
# The anti-alias blur runs when the crop downsamples by more than this factor (S/256/2).
BLUR_DOWNSAMPLE_THRESHOLD = 1.1

# ---------------------------------------------------------------- MANO
NUM_VERTICES = 778
NUM_FACES = 1538
NUM_MANO_JOINTS = 16  # root + 15 finger joints
NUM_HAND_JOINTS = 15
NUM_BETAS = 10
NUM_JOINTS = 21  # 16 MANO joints + 5 fingertip vertices
# MANO's own joint order: 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb.
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Fingertip vertex ids appended as joints 16..20: thumb, index, middle, ring, pinky.
FINGERTIP_VERTEX_IDS = (744, 320, 443, 554, 671)
# OpenPose order from the 21 MANO-order joints (16 MANO joints then the 5 tips).
MANO_TO_OPENPOSE = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)

# ---------------------------------------------------------------- OpenPose joints
JOINT_NAMES = (
    "wrist",
    "thumb_cmc",
    "thumb_mcp",
    "thumb_ip",
    "thumb_tip",
    "index_mcp",
    "index_pip",
    "index_dip",
    "index_tip",
    "middle_mcp",
    "middle_pip",
    "middle_dip",
    "middle_tip",
    "ring_mcp",
    "ring_pip",
    "ring_dip",
    "ring_tip",
    "pinky_mcp",
    "pinky_pip",
    "pinky_dip",
    "pinky_tip",
)
# Parent of each OpenPose joint (-1 for the wrist): the skeleton's bones.
OPENPOSE_PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
FINGERTIP_JOINTS = (4, 8, 12, 16, 20)


def _openpose_to_mano_joint() -> tuple[int, ...]:
    """For each OpenPose joint, the MANO joint whose global rotation orients it.

    Joints 0..15 of the 21-joint MANO-order list are MANO joints; a fingertip (16..20) has no
    rotation of its own and takes its parent's (the finger's last MANO joint).
    """
    out = []
    for mano_index in MANO_TO_OPENPOSE:
        if mano_index < NUM_MANO_JOINTS:
            out.append(mano_index)
        else:
            # tips 16..20 = thumb, index, middle, ring, pinky -> last joint of that finger
            out.append({16: 15, 17: 3, 18: 6, 19: 12, 20: 9}[mano_index])
    return tuple(out)


OPENPOSE_ROTATION_SOURCE = _openpose_to_mano_joint()

# colour channels of the images the pipeline takes (H x W x 3 RGB; RGBA is converted at the entry)
RGB_CHANNELS = 3
RGBA_CHANNELS = 4
