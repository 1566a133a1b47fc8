"""One restricted unpickler for the pickle files wilor_ros reads but does not trust.

Two kinds of input arrive as pickles: reconstructor checkpoints (``core/models/checkpoint.py``, through
``torch.load``) and the MANO hand model (``core/hand/mano.py``). Plain ``pickle.load`` imports and calls
whatever global a file names, so a tampered file runs code. Both are read with
:class:`RestrictedUnpickler`, one mechanism with one :class:`Allowlist` per kind of file:

* ``find_class`` first maps Python 2 global names to their Python 3 names with the standard
  library's own ``fix_imports`` table (protocol-2 pickles, torch.save's default and the MANO file's
  format, write ``__builtin__.set``, ``copy_reg._reconstructor``), so a global is allowed or refused
  under one name whatever wrote it;
* then it hands out only what the allowlist names: a fixed table, plus optionally a rule for open
  families (torch dtypes). Anything else raises :class:`RefusedGlobal` naming the global, before it
  is imported;
* a class whose code must not run is named in the allowlist by an inert stand-in (a
  :class:`StandIn`): the unpickler builds it without calling a constructor, and ``BUILD`` only
  records the pickled state, which the caller reads once the whole file is loaded.

This is the pattern of the pickle documentation's "Restricting Globals"; torch keeps its own
weights-only allowlist private, so the lists are ours.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

GlobalName = tuple[str, str]  # (module, name), as a pickle names a global


class RefusedGlobal(pickle.UnpicklingError, ValueError):
    """A pickle named a global outside the allowlist; nothing of it was imported or called.

    An UnpicklingError (what ``torch.load``'s callers expect) and a ValueError (bad input).
    ``module`` and ``name`` are the refused global's Python 3 names.
    """

    def __init__(self, module: str, name: str, message: str) -> None:
        super().__init__(message)
        self.module = module
        self.name = name


@dataclass(frozen=True)
class Allowlist:
    """What one kind of file may name.

    globals: (module, name) -> the object handed out: the real one for builders that only make data
    (containers, array reconstructors), a :class:`StandIn` for a class whose code must not run.
    refusal: (module, name) -> the message of the error for any other global.
    rule: resolves open families the table cannot list (torch dtypes); None for "not allowed".
    """

    globals: Mapping[GlobalName, Any]
    refusal: Callable[[str, str], str]
    rule: Callable[[str, str], Any | None] | None = None


def python3_name(module: str, name: str) -> GlobalName:
    """A Python 2 global name -> its Python 3 name, as the standard unpickler's ``fix_imports`` maps
    it (``__builtin__.set`` -> ``builtins.set``); other names are returned unchanged.

    The standard unpickler applies this table inside its own ``find_class``, which
    :class:`RestrictedUnpickler` replaces, so it is applied here, before the allowlist.
    """
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of ``allowlist`` (set by a subclass, one per kind of file).

    torch.load subclasses the Unpickler of its ``pickle_module`` and calls this ``find_class`` for
    every global (see :func:`as_pickle_module`), so the allowlist is a class attribute, not a
    constructor argument.
    """

    allowlist: ClassVar[Allowlist]

    def find_class(self, module: str, name: str) -> Any:
        module, name = python3_name(module, name)
        allowed = self.allowlist.globals.get((module, name))
        if allowed is None and self.allowlist.rule is not None:
            allowed = self.allowlist.rule(module, name)
        if allowed is None:
            raise RefusedGlobal(module, name, self.allowlist.refusal(module, name))
        return allowed


def as_pickle_module(unpickler: type[RestrictedUnpickler]) -> SimpleNamespace:
    """A pickle-module look-alike for ``torch.load(pickle_module=...)``: torch subclasses its
    ``Unpickler`` (zip format) and calls its ``load`` (legacy format)."""

    def load(file: Any, **kwargs: Any) -> Any:
        return unpickler(file, **kwargs).load()

    return SimpleNamespace(Unpickler=unpickler, load=load, __name__="wilor_ros_restricted_pickle")


class StandIn:
    """Base of the inert stand-ins an allowlist names in place of a class whose code must not run.

    The unpickler creates an instance without running any code of the replaced class (its name is
    never imported), and ``BUILD`` calls ``__setstate__``, which only records the pickled state in
    ``state`` (checked to be a ``state_type`` when a subclass sets one). The caller interprets it
    after loading.
    """

    state_type: ClassVar[type | None] = None  # the state a subclass accepts; None: anything
    what: ClassVar[str] = "object"  # for messages: "a pickled <what> ..."
    state: Any = None

    def __setstate__(self, state: Any) -> None:
        if self.state_type is not None and not isinstance(state, self.state_type):
            raise ValueError(f"a pickled {self.what} has state of type {type(state).__name__}")
        self.state = state


# ------------------------------------------------------------------ data-only builders for allowlists
def latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes with protocol 2; only the latin-1 codec."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise ValueError(f"pickle asks for codec {encoding!r}; only latin-1 is allowed")
    return codecs.encode(text, "latin1", errors)


def empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as Python 3 pickles an empty bytes object with protocol 2 (nothing else)."""
    if args:
        raise ValueError("pickle calls bytes() with arguments; only the empty bytes object is allowed")
    return b""


def reconstruct_plain_object(cls: type, base: type, state: Any = None) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects) for ``object`` bases only; ``cls`` has itself
    come through the allowlist."""
    if base is not object or state is not None:
        raise ValueError("pickle asks for copyreg._reconstructor with a base other than object")
    return cls.__new__(cls)


# numpy's own reconstructors, taken from reduce tuples so no private module is imported by name
# (numpy 1.x pickles them as numpy.core.multiarray, numpy 2.x as numpy._core.multiarray).
_NDARRAY_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR_RECONSTRUCT = np.float64(0.0).__reduce__()[0]
NUMPY_GLOBALS: dict[GlobalName, Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    NUMPY_GLOBALS[(_module, "_reconstruct")] = _NDARRAY_RECONSTRUCT
    NUMPY_GLOBALS[(_module, "scalar")] = _SCALAR_RECONSTRUCT


def numpy_dtype_class(module: str, name: str) -> Any | None:
    """Rule for numpy 2's dtype classes, pickled as ``numpy.dtypes.<X>DType``; None for other names."""
    if module.startswith("numpy") and module.endswith("dtypes") and name.endswith("DType"):
        value = getattr(np.dtypes, name, None)
        if isinstance(value, type) and issubclass(value, np.dtype):
            return value
    return None
