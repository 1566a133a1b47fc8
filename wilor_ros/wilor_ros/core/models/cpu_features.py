"""Which bfloat16 matrix instructions this CPU has (read from /proc/cpuinfo on Linux).

bf16 on a CPU only pays where the CPU multiplies bf16 natively: AMX tiles (``amx_bf16``, Intel Sapphire
Rapids and later) or AVX-512 BF16 dot products (``avx512_bf16``, Intel Cooper Lake, AMD Zen 4 and later).
Elsewhere oneDNN emulates bf16 with float32 arithmetic plus conversions, which is slower than float32, so
``precision: bf16`` is refused there instead of running slowly. torch has no public query for this, and
the kernel's flag list is what the kernels themselves test, so the flags are read directly.
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO_PATH = Path("/proc/cpuinfo")
# best first: AMX tiles are ~4x float32 throughput per core, AVX-512 BF16 ~2x
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo_path: Path | None = None) -> frozenset[str]:
    """The ``flags`` of the first processor in /proc/cpuinfo (empty where there is no such file)."""
    path = CPUINFO_PATH if cpuinfo_path is None else Path(cpuinfo_path)
    try:
        text = path.read_text()
    except OSError:  # not Linux, or /proc not mounted
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def bf16_cpu_flags(cpuinfo_path: Path | None = None) -> tuple[str, ...]:
    """The bf16 matrix flags this CPU has, best first: e.g. ("amx_bf16", "avx512_bf16"), or ()."""
    flags = cpu_flags(cpuinfo_path)
    return tuple(flag for flag in BF16_FLAGS if flag in flags)


def describe_bf16_support(cpuinfo_path: Path | None = None) -> str:
    """One line for reports: which flags were found, or that none was."""
    found = bf16_cpu_flags(cpuinfo_path)
    if found:
        return " + ".join(found)
    return f"none (no {' / '.join(BF16_FLAGS)} in {CPUINFO_PATH})"


def check_cpu_bf16(cpuinfo_path: Path | None = None) -> tuple[str, ...]:
    """The bf16 flags found; ValueError when the CPU has none (bf16 would be slower than fp32 there)."""
    found = bf16_cpu_flags(cpuinfo_path)
    if not found:
        where = str(cpuinfo_path or CPUINFO_PATH) if platform.system() == "Linux" else platform.system()
        raise ValueError(
            f"precision bf16 on the CPU needs bfloat16 matrix instructions ({' or '.join(BF16_FLAGS)}), and "
            f"this CPU has none ({where}): bf16 would only be emulated and run slower than fp32. "
            "Use precision fp32 on this machine, or bf16/fp16 on a CUDA device."
        )
    return found
