"""Every ```python block of the user guides runs, in order, in one namespace, on a temporary store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
GUIDES = ["guide-artifacts.md", "guide-durable-execution.md", "memory.md"]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(name: str) -> list[str]:
    return _BLOCK.findall((DOCS / name).read_text())


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_snippets_run(guide: str, capsys: pytest.CaptureFixture[str]) -> None:
    found = blocks(guide)
    assert len(found) >= 5, f"{guide} lost its examples"
    namespace: dict[str, object] = {"__name__": f"guide_{guide.replace('-', '_')[:-3]}"}
    for i, code in enumerate(found):
        exec(compile(code, f"{guide}[block {i}]", "exec"), namespace)
