"""One assembly model over the session's synthesized cloud assembly, and the verdicts on a module's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.assembly import Assembly
from tests.policy.engine import Verdict, judge


@pytest.fixture(scope="session")
def assembly(cloud_assembly: Path) -> Assembly:
    return Assembly(cloud_assembly)


@pytest.fixture(scope="module")
def verdicts(assembly: Assembly, request: pytest.FixtureRequest) -> dict[str, Verdict]:
    """The engine's verdict on every case of the test module's `CASES` table, judged in one run."""
    return judge(assembly, request.module.CASES)
