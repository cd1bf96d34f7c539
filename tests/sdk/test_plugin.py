"""The pytest plugin: ``kitaru_temp_store`` gives a test its own store under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import os
from pathlib import Path

import kitaru
from kitaru import KitaruClient, checkpoint, flow


@checkpoint
def answer() -> int:
    kitaru.save("note", "from the user's test")
    return 42


@flow
def my_flow() -> int:
    return answer()


def test_my_flow(kitaru_temp_store, tmp_path):
    assert os.environ["KITARU_STORE"] == str(kitaru_temp_store)
    assert Path(kitaru_temp_store).is_relative_to(tmp_path)
    handle = my_flow.run()
    assert handle.wait() == 42
    assert (Path(kitaru_temp_store) / "config").is_file()
    assert KitaruClient().executions.get(handle.exec_id).artifact("note").load() == "from the user's test"
    Path(os.environ["SEEN_FILE"]).write_text(str(kitaru_temp_store))


def test_each_test_gets_a_fresh_store(kitaru_temp_store):
    assert not Path(kitaru_temp_store).exists()
"""


def test_kitaru_temp_store_isolates_a_users_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, store_path: Path
) -> None:
    seen = pytester.path / "seen.txt"
    monkeypatch.setenv("SEEN_FILE", str(seen))
    outer_store = os.environ["KITARU_STORE"]
    pytester.makepyfile(test_user_flow=USER_TESTS)
    # (hypothesis' plugin is left out only because it makes the inner run slow.)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=2)
    inner_store = Path(seen.read_text())
    assert inner_store.name == "kitaru-store"
    # Under the inner test's own tmp_path (which pytester puts next to its directory).
    assert inner_store.parent.name == "test_my_flow0"
    assert inner_store.is_relative_to(pytester.path.parent)
    assert str(inner_store) != outer_store
    assert (inner_store / "config").is_file()
    # The plugin undid its change: this test's own store setting is back, and untouched.
    assert os.environ["KITARU_STORE"] == outer_store
    assert not store_path.exists()


def test_plugin_is_registered_through_the_entry_point(pytestconfig: pytest.Config) -> None:
    import kitaru.testing

    assert pytestconfig.pluginmanager.is_registered(kitaru.testing)
