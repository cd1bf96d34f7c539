"""SIGKILL at random moments and in named phases: the store survives every kill.

Bounded CI version of the crash soak (bench/soak.py runs the same harness for 200+ kills). After
every kill: the store opens, fsck is clean, every execution the workload journaled as returned is
complete with every value loading to its promised id, and executions cut short show as running
with every artifact they list loading (harness.verify_store).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import harness
import pytest

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("KITARU_RELIABILITY_SEED", "20250101"))

# mode -> kills in CI: 30 in all
KILLS = {"flows": 8, "manifest": 6, "gc": 8, "compact": 8}


@pytest.mark.parametrize("mode", sorted(KILLS))
def test_store_survives_sigkill(mode: str, tmp_path: Path) -> None:
    figures = harness.run_crash(
        mode,
        KILLS[mode],
        tmp_path,
        seed=SEED + sorted(KILLS).index(mode),
        rounds_per_store=4,
        deadline=time.monotonic() + 120,
    )
    assert not figures.violations, "\n".join(figures.violations)
    assert figures.kills >= KILLS[mode]
    assert figures.verifications >= figures.kills // len(harness.CRASH_MODES[mode])
    assert figures.values_checked > 0
    if mode == "compact":
        # The rounds killed compaction itself, in the middle of the copy among other places.
        assert any(k.startswith("compact:compact") for k in figures.kills_by_phase), figures.kills_by_phase
