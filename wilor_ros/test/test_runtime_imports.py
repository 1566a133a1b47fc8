"""The runtime (node + pipeline on ONNX Runtime) needs neither torch nor the training stacks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from helpers import import_blocker_source

# every import of these fails in the script: the runtime must not touch them
BLOCKED = ("torch", "torchvision", "ultralytics", "lightning", "pytorch_lightning")
SCRIPT = import_blocker_source(BLOCKED) + textwrap.dedent(
    """
    import sys

    import numpy as np
    from wilor_ros.core.pipeline import HandPipeline
    from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig
    from wilor_ros.core.temporal.temporal_pipeline import TemporalHandPipeline
    from wilor_ros.core.types import HandDetection, Side
    import wilor_ros.ros.node  # noqa: F401

    paths = ModelPaths(model_dir=sys.argv[1])
    config = PipelineConfig(models=paths, backend="onnxruntime", use_detector=False)
    pipeline = HandPipeline.from_config(config)
    box = HandDetection(np.array([40, 30, 120, 110], np.float32), Side.LEFT)
    hands = pipeline.predict(np.full((160, 200, 3), 90, np.uint8), boxes=[box])
    TemporalHandPipeline(pipeline).process(np.full((160, 200, 3), 90, np.uint8), 1.0, boxes=[box])
    assert len(hands) == 1 and hands[0].vertices.shape == (778, 3)
    assert not any(name.split(".")[0] in BLOCKED for name in sys.modules)
    print("runtime ok without torch")
    """
)


def test_onnx_runtime_path_needs_no_torch_and_no_training_stack(synthetic_model_dir):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(synthetic_model_dir)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "runtime ok without torch" in result.stdout
