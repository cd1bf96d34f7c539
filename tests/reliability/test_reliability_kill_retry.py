"""SIGKILL and SIGTERM a multi-checkpoint flow at random moments; retry it from a new process.

Bounded CI version of the kill-and-retry soak (``bench/soak.py --flow-kills``, 100+ kills): after
each signal the execution reads failed (Crashed) or cancelled, a retry in a new process continues
it, and in the end it is completed with the exact objects of an uninterrupted run; no checkpoint
that had committed before a kill ran again (the side log of checkpoint bodies); fsck is clean
(kill_retry.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import kill_retry
import pytest

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("KITARU_RELIABILITY_SEED", "20250101"))
KILLS = 16


def test_killed_flows_retry_to_the_uninterrupted_result(tmp_path: Path) -> None:
    figures = kill_retry.run_kill_retry(
        KILLS, tmp_path, seed=SEED, term_every=5, deadline=time.monotonic() + 90
    )
    assert not figures.violations, "\n".join(figures.violations)
    assert figures.kills >= KILLS and figures.terms >= 2
    assert figures.retries >= figures.kills + figures.terms
    assert figures.retry_chains > 0 and figures.executions_verified >= figures.retry_chains
    assert figures.committed_checked > 0  # some retries had committed checkpoints to keep
    assert any(k.startswith("retry:") for k in figures.kills_by_phase), figures.kills_by_phase
