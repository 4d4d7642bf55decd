"""Writing variants of the example platform config and reading the one-line error they produce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.config import DEFAULT_CONFIG, ConfigError, load_platform


def base() -> dict[str, Any]:
    """The example config as a plain dict, for a test to break one field of."""
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text())
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_for(tmp_path: Path, data: dict[str, Any]) -> str:
    """The ConfigError line for `data`, checked to be one line that starts with the file's path."""
    with pytest.raises(ConfigError) as info:
        load_platform(write(tmp_path, data))
    line = info.value.line()
    assert "\n" not in line
    assert line.startswith(str(tmp_path / "platform.yaml"))
    return line
