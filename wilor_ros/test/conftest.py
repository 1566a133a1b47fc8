"""Shared test fixtures: the parity kit in ../shared/reference, temporary synthetic assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# CI places the parity kit beside the checkout; WILOR_REFERENCE overrides.
REFERENCE_DIR = Path(os.environ.get("WILOR_REFERENCE", REPO_ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official-parity kit (SPEC.md, goldens, synthetic MANO, demo photos)."""
    if not (REFERENCE_DIR / "SPEC.md").is_file():
        pytest.skip(f"parity kit not found at {REFERENCE_DIR} (set WILOR_REFERENCE to its folder)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def demo_images_dir(reference_dir: Path) -> Path:
    folder = reference_dir / "demo_images"
    if not folder.is_dir():
        pytest.skip(f"demo photos not found at {folder}")
    return folder
