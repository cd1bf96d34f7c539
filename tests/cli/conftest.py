from __future__ import annotations

import cli_demo
import pytest
from cli_demo import Run
from click.testing import CliRunner, Result

from kitaru_store import Repository
from kitaru_store.cli import cli


@pytest.fixture
def demo(repo: Repository) -> cli_demo.Demo:
    """The demo store of docs/cli.md: research, its replay, a failed ingest, a running research."""
    return cli_demo.build(repo)


@pytest.fixture
def run() -> Run:
    """``run("log", "--json")``: the CLI in-process; exceptions other than exits propagate."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str | None] | None = None, color: bool = False) -> Result:
        return runner.invoke(
            cli, list(args), env=env, color=color, prog_name="kitaru-store", catch_exceptions=False
        )

    return invoke
