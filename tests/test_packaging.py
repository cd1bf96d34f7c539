"""What the wheel ships beyond the code: the PEP 561 marker that makes users' type checkers read our hints."""

from __future__ import annotations

import importlib.resources
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wheel_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages: list[str] = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return packages


def test_every_shipped_package_is_marked_typed() -> None:
    packages = wheel_packages()
    assert packages == ["kitaru", "kitaru_store"]
    for package in packages:
        # The installed package (the one the tests import) carries the marker, and so does the
        # source tree the wheel is built from; hatchling ships every file under a listed package.
        assert importlib.resources.files(package).joinpath("py.typed").is_file(), package
        assert (ROOT / package / "py.typed").is_file(), package
