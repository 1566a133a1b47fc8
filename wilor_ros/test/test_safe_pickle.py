"""The shared restricted unpickler (core/files/safe_pickle.py) on its own, with small allowlists of the test's
making: refusal by name, Python 2 names mapped before the allowlist, stand-ins that run no code.
The checkpoint and MANO allowlists are tested through their loaders (test_checkpoint_formats.py,
test_reconstructor.py, test_mano.py)."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

import pytest

from wilor_ros.core.files.safe_pickle import Allowlist, RefusedGlobal, RestrictedUnpickler, StandIn

PROTOCOL_2 = 2  # torch.save's default and the MANO file's: writes Python 2 names


def _refusal(module: str, name: str) -> str:
    return f"test refuses {module}.{name}"


def _unpickler(globals_: dict[tuple[str, str], Any]) -> type[RestrictedUnpickler]:
    class Unpickler(RestrictedUnpickler):
        allowlist = Allowlist(globals=globals_, refusal=_refusal)

    return Unpickler


def _load(data: bytes, globals_: dict[tuple[str, str], Any]) -> Any:
    return _unpickler(globals_)(io.BytesIO(data)).load()


def _globals_named(data: bytes) -> list[str]:
    """'module name' of every GLOBAL opcode in a pickle stream (protocol <= 3 writes them)."""
    return [str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"]


class _Touch:
    """Unpickling this would create ``path`` through os.system."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


def test_a_global_outside_the_allowlist_is_refused_with_its_name(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    data = pickle.dumps({"ok": {1, 2}, "evil": _Touch(marker)}, protocol=PROTOCOL_2)
    with pytest.raises(RefusedGlobal, match=r"test refuses (posix|os|nt)\.system") as caught:
        _load(data, {("builtins", "set"): set})
    assert caught.value.module in ("posix", "os", "nt") and caught.value.name == "system"
    # one error for both kinds of caller: torch.load's (UnpicklingError) and bad input (ValueError)
    assert isinstance(caught.value, pickle.UnpicklingError) and isinstance(caught.value, ValueError)
    assert not marker.exists()


def test_python2_names_are_mapped_before_the_allowlist() -> None:
    data = pickle.dumps({"s": {1, 2}}, protocol=PROTOCOL_2)
    assert "__builtin__ set" in _globals_named(data)  # the stream names the Python 2 module
    assert _load(data, {("builtins", "set"): set}) == {"s": {1, 2}}
    # an entry under the Python 2 name alone does not match: the lookup only ever sees Python 3 names
    with pytest.raises(RefusedGlobal, match=r"test refuses builtins\.set"):
        _load(data, {("__builtin__", "set"): set})


def test_a_refused_python2_global_is_named_by_its_python3_name() -> None:
    data = b"\x80\x02c__builtin__\neval\nq\x00."  # a bare Python 2 global, protocol 2
    with pytest.raises(RefusedGlobal) as caught:
        _load(data, {("builtins", "set"): set})
    assert (caught.value.module, caught.value.name) == ("builtins", "eval")


CALLS: list[str] = []  # what the original class below ran


class Tripwire:
    """Records every piece of its own code that runs."""

    def __init__(self, value: int) -> None:
        CALLS.append("__init__")
        self.value = value

    def __setstate__(self, state: dict) -> None:
        CALLS.append("__setstate__")
        self.__dict__.update(state)


class _TripwireStandIn(StandIn):
    state_type = dict
    what = "tripwire"


def test_a_stand_in_is_built_without_running_code_of_the_class_it_replaces() -> None:
    data = pickle.dumps([Tripwire(7)], protocol=PROTOCOL_2)
    assert f"{Tripwire.__module__} Tripwire" in _globals_named(data)
    CALLS.clear()
    (loaded,) = _load(data, {(Tripwire.__module__, "Tripwire"): _TripwireStandIn})
    assert type(loaded) is _TripwireStandIn and loaded.state == {"value": 7}
    assert CALLS == []  # neither the constructor nor __setstate__ of Tripwire ran
    # without the stand-in entry the class is refused, not imported
    with pytest.raises(RefusedGlobal, match="Tripwire"):
        _load(data, {})


class ListState:
    """Pickles its state as a list, not the dict the stand-in expects."""

    def __getstate__(self) -> list:
        return [1, 2]


def test_a_stand_in_refuses_state_of_the_wrong_type() -> None:
    data = pickle.dumps(ListState(), protocol=PROTOCOL_2)
    with pytest.raises(ValueError, match="a pickled tripwire has state of type list"):
        _load(data, {(ListState.__module__, "ListState"): _TripwireStandIn})
