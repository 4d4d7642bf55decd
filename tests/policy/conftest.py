"""One assembly model over the session's synthesized cloud assembly, shared by every policy table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.assembly import Assembly


@pytest.fixture(scope="session")
def assembly(cloud_assembly: Path) -> Assembly:
    return Assembly(cloud_assembly)
