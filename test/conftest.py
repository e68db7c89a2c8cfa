"""Shared fixtures. Tests that read ../shared (real frames) skip cleanly when it is absent."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_real() -> Path:
    """../shared/real (BOP-convention real frames, mm); skips the test when absent."""
    path = SHARED / "real"
    if not path.is_dir():
        pytest.skip("../shared/real is not present")
    return path
