"""The node's parameters at run time: declared from ``parameters.PARAMETERS`` (derived from
``NodeConfig``'s fields), validated when set, and turned into one ``NodeConfig``."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from wilor_ros.core.config import load_config
from wilor_ros.ros.node_config import NodeConfig
from wilor_ros.ros.parameters import BY_NAME, PARAMETERS, ParamSpec

if TYPE_CHECKING:
    from rclpy.node import Node


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS descriptor of one parameter: description, read-only flag, range or choices."""
    result = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        result.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.minimum is not None and spec.maximum is not None and not isinstance(spec.default, bool):
        if isinstance(spec.default, int):
            result.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
            ]
        else:
            result.floating_point_range = [
                FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
            ]
    return result


class NodeParameters:
    """Declares every parameter on ``node``; ``config`` is always the NodeConfig they make.

    A value set at run time is validated (type, range, then the whole configuration through
    ``load_config``; the reason of a rejection goes back to the caller); an accepted change is
    passed to ``on_change(old, new)``.
    """

    def __init__(self, node: Node, on_change: Callable[[NodeConfig, NodeConfig], None]) -> None:
        for spec in PARAMETERS:
            node.declare_parameter(spec.name, spec.default, descriptor(spec))
        self.values: dict[str, Any] = {spec.name: node.get_parameter(spec.name).value for spec in PARAMETERS}
        for name, value in self.values.items():
            reason = BY_NAME[name].validate(value)
            if reason:
                raise ValueError(f"parameter {reason}")
        self.config = self.build(self.values)
        self._on_change = on_change
        node.add_on_set_parameters_callback(self._on_set)

    @staticmethod
    def build(values: dict[str, Any]) -> NodeConfig:
        """The NodeConfig of these parameter values (the one configuration function, with the
        parameters as dotted-path overrides); raises ValueError naming what is wrong."""
        return load_config(NodeConfig, None, {BY_NAME[name].path: value for name, value in values.items()})

    def _on_set(self, parameters: list[Any]) -> SetParametersResult:
        updates = {}
        for param in parameters:
            spec = BY_NAME.get(param.name)
            if spec is None:
                continue  # parameters of other libraries (e.g. use_sim_time)
            reason = spec.validate(param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            updates[param.name] = param.value
        if not updates:
            return SetParametersResult(successful=True)
        values = {**self.values, **updates}
        try:
            config = self.build(values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        old, old_values = self.config, self.values
        self.values, self.config = values, config
        try:
            self._on_change(old, config)
        except ValueError as exc:  # a part refused it: nothing changes
            self.values, self.config = old_values, old
            self._on_change(config, old)
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)


def usage() -> str:
    """``hand_reconstruction_node --help``: how to run it, its topics and parameters."""
    lines = [
        "usage: hand_reconstruction_node [--ros-args -p NAME:=VALUE ... -r FROM:=TO ...]",
        "",
        "Camera images in; wilor_msgs/HandMeshArray ('hands'), TeleopHandArray ('teleop_hands'),",
        "one TF frame per hand joint, RViz markers and a debug overlay out. Inputs: 'image' (or",
        "'image/compressed'), 'camera_info', optional 'depth' and 'hand_boxes'.",
        "Model files: ros2 run wilor_ros wilor-ros export --model-dir DIR (see the README).",
        "",
        "parameters (name, default: description):",
    ]
    for spec in PARAMETERS:
        text = f"{spec.name} = {spec.default!r}: {spec.description}"
        if spec.choices:
            text += f" ({' | '.join(spec.choices)})"
        elif spec.minimum is not None:
            text += f" ({spec.minimum} .. {spec.maximum})"
        if spec.read_only:
            text += "; fixed at start-up"
        lines += textwrap.wrap(text, 100, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)
