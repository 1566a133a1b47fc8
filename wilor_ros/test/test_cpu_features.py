"""bf16 support detection from /proc/cpuinfo and the refusal of bf16 on CPUs without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from wilor_ros.core.models import cpu_features
from wilor_ros.core.models.cpu_features import (
    bf16_cpu_flags,
    check_cpu_bf16,
    cpu_flags,
    describe_bf16_support,
)

# The layout of a real /proc/cpuinfo entry (two processors; the flags line is what matters)
CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
model name\t: {model}
flags\t\t: fpu vme de pse tsc msr pae mce cx8 sse sse2 avx avx2 fma {extra}
bugs\t\t: spectre_v1

processor\t: 1
vendor_id\t: {vendor}
model name\t: {model}
flags\t\t: fpu vme de pse tsc msr pae mce cx8 sse sse2 avx avx2 fma {extra}
"""


def write_cpuinfo(folder: Path, extra: str, model: str = "Test CPU") -> Path:
    path = folder / "cpuinfo"
    path.write_text(CPUINFO.format(vendor="GenuineIntel", model=model, extra=extra))
    return path


def test_amx_and_avx512_bf16_are_found_best_first(tmp_path):
    path = write_cpuinfo(tmp_path, "avx512f avx512_bf16 amx_tile amx_bf16 amx_int8")
    assert bf16_cpu_flags(path) == ("amx_bf16", "avx512_bf16")
    assert describe_bf16_support(path) == "amx_bf16 + avx512_bf16"
    assert check_cpu_bf16(path) == ("amx_bf16", "avx512_bf16")


def test_avx512_bf16_alone(tmp_path):
    path = write_cpuinfo(tmp_path, "avx512f avx512bw avx512_bf16 avx512_vnni", model="AMD EPYC")
    assert bf16_cpu_flags(path) == ("avx512_bf16",)


def test_cpu_without_bf16_is_refused_with_advice(tmp_path):
    path = write_cpuinfo(tmp_path, "avx512f avx512bw avx512_vnni")  # AVX-512 but no BF16 extension
    assert bf16_cpu_flags(path) == ()
    assert describe_bf16_support(path).startswith("none")
    with pytest.raises(ValueError, match="amx_bf16 or avx512_bf16") as err:
        check_cpu_bf16(path)
    assert "fp32" in str(err.value) and "slower" in str(err.value)


def test_missing_cpuinfo_means_no_flags(tmp_path):
    assert cpu_flags(tmp_path / "absent") == frozenset()
    assert bf16_cpu_flags(tmp_path / "absent") == ()


def test_this_machine_agrees_with_its_cpuinfo():
    if not cpu_features.CPUINFO_PATH.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    text = cpu_features.CPUINFO_PATH.read_text()
    flags_line = next(line for line in text.splitlines() if line.startswith("flags"))
    expected = tuple(f for f in ("amx_bf16", "avx512_bf16") if f in flags_line.split())
    assert bf16_cpu_flags() == expected
