"""Checkpoint caching: same code and inputs reuse a completed call's output, across executions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import kitaru
from kitaru import KitaruClient, KitaruUsageError, checkpoint, flow
from kitaru_store import Repository

CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    CALLS.clear()
    yield


@checkpoint(cache=True)
def embed(text: str) -> list[int]:
    CALLS.append(f"embed:{text}")
    kitaru.save("tokens", text.split())
    return [len(w) for w in text.split()]


@checkpoint
def plain(text: str) -> str:
    CALLS.append(f"plain:{text}")
    return text.upper()


@checkpoint(cache=False)
def never(text: str) -> str:
    CALLS.append(f"never:{text}")
    return text[::-1]


@flow(name="cache_embedding")
def embedding(text: str) -> Any:
    return embed(text)


@flow(name="cache_mixed")
def mixed(text: str) -> Any:
    return [plain(text), never(text)]


@flow(name="cache_flow_level", cache=True)
def flow_level(text: str) -> Any:
    return [plain(text), never(text)]


def _calls(exec_id: str) -> list[Any]:
    return KitaruClient().executions.get(exec_id).checkpoints


def test_a_cached_checkpoint_reuses_the_output_of_an_earlier_execution() -> None:
    first = embedding.run("hello big world")
    assert first.wait() == [5, 3, 5]
    second = embedding.run("hello big world")
    assert second.wait() == [5, 3, 5]
    assert CALLS == ["embed:hello big world"]  # the function ran once

    [src] = _calls(first.exec_id)
    [hit] = _calls(second.exec_id)
    assert src.status == "completed" and src.reused_from is None
    assert hit.status == "cached"
    assert hit.reused_from == first.exec_id
    assert hit.output_object_id == src.output_object_id
    assert hit.invocation_id == "embed"
    assert KitaruClient().executions.get(second.exec_id).replay_of is None  # a fresh run, not a replay


def test_a_cache_hit_copies_the_saved_artifacts_of_the_cached_call() -> None:
    first = embedding.run("a bc")
    second = embedding.run("a bc")
    client = KitaruClient()
    src = {a.name: a for a in client.executions.get(first.exec_id).artifacts}
    hit = {a.name: a for a in client.executions.get(second.exec_id).artifacts}
    assert set(hit) == {"embed", "tokens"}
    for name in ("embed", "tokens"):
        assert hit[name].object_id == src[name].object_id
        assert hit[name].artifact_id != src[name].artifact_id
        assert hit[name].exec_id == second.exec_id
        assert hit[name].invocation_id == "embed"
    assert hit["tokens"].load() == ["a", "bc"]


def test_a_cache_hit_under_another_invocation_id_renames_the_copied_entries() -> None:
    @flow(name="cache_twice")
    def twice(text: str) -> Any:
        plain("warm-up")
        return embed(text)

    @flow(name="cache_second_call")
    def second_call(text: str) -> Any:
        embed("something else")
        return embed(text)

    first = twice.run("x y")
    second = second_call.run("x y")
    assert second.wait() == [1, 1]
    assert CALLS == ["plain:warm-up", "embed:x y", "embed:something else"]
    calls = _calls(second.exec_id)
    assert [(c.invocation_id, c.status) for c in calls] == [("embed", "completed"), ("embed_2", "cached")]
    assert calls[1].reused_from == first.exec_id
    arts = [
        (a.name, a.invocation_id)
        for a in KitaruClient().executions.get(second.exec_id).artifacts
        if a.invocation_id == "embed_2"
    ]
    assert sorted(arts) == [("embed_2", "embed_2"), ("tokens", "embed_2")]


def test_a_repeated_call_in_the_same_execution_is_a_recorded_cache_hit() -> None:
    @flow(name="cache_same_run")
    def same_run() -> Any:
        return [embed("p q"), embed("p q")]

    handle = same_run.run()
    assert handle.wait() == [[1, 1], [1, 1]]
    assert CALLS == ["embed:p q"]
    calls = _calls(handle.exec_id)
    assert [(c.invocation_id, c.status) for c in calls] == [("embed", "completed"), ("embed_2", "cached")]
    assert calls[1].reused_from == handle.exec_id
    assert calls[1].output_object_id == calls[0].output_object_id
    names = {(a.name, a.invocation_id) for a in KitaruClient().executions.get(handle.exec_id).artifacts}
    assert names == {("embed", "embed"), ("tokens", "embed"), ("embed_2", "embed_2"), ("tokens", "embed_2")}
    # the recorded sequence is complete, so a replay of it reuses both calls
    replay = same_run.replay(handle.exec_id)
    assert replay.wait() == [[1, 1], [1, 1]]
    assert [c.status for c in _calls(replay.exec_id)] == ["reused", "reused"]


def test_different_inputs_miss_the_cache() -> None:
    embedding.run("one")
    embedding.run("two")
    embedding.run("one")
    assert CALLS == ["embed:one", "embed:two"]


def test_inputs_handed_over_from_another_checkpoint_are_compared_by_value() -> None:
    @flow(name="cache_chained")
    def chained(text: str) -> Any:
        return embed(plain(text))

    chained.run("ab cd")
    second = chained.run("ab cd")
    assert CALLS == ["plain:ab cd", "embed:AB CD", "plain:ab cd"]
    hit = _calls(second.exec_id)[1]
    assert (hit.status, hit.upstream) == ("cached", ("plain",))


def test_changed_code_misses_the_cache() -> None:
    @checkpoint(name="score", cache=True)
    def score_v1(x: int) -> int:
        CALLS.append("v1")
        return x + 1

    @checkpoint(name="score", cache=True)
    def score_v2(x: int) -> int:
        CALLS.append("v2")
        return x + 2

    @flow(name="cache_v1")
    def v1(x: int) -> Any:
        return score_v1(x)

    @flow(name="cache_v2")
    def v2(x: int) -> Any:
        return score_v2(x)

    assert v1.run(1).wait() == 2
    assert v2.run(1).wait() == 3  # not the cached output of the old code
    assert v1.run(1).wait() == 2
    assert v2.run(1).wait() == 3
    assert CALLS == ["v1", "v2"]


def test_the_cache_misses_after_the_source_execution_is_deleted(repo: Repository) -> None:
    first = embedding.run("gone")
    repo.delete_execution(first.exec_id)
    second = embedding.run("gone")
    assert second.wait() == [4]
    assert CALLS == ["embed:gone", "embed:gone"]
    [call] = _calls(second.exec_id)
    assert call.status == "completed" and call.reused_from is None
    # the new call is the cache entry now
    third = embedding.run("gone")
    assert CALLS == ["embed:gone", "embed:gone"]
    assert _calls(third.exec_id)[0].reused_from == second.exec_id


def test_a_failed_call_is_not_cached() -> None:
    attempts: list[int] = []

    @checkpoint(name="cache_flaky", cache=True)
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first call fails")
        return len(attempts)

    @flow(name="cache_flaky_flow")
    def flaky_flow() -> Any:
        return flaky()

    assert flaky_flow.run().status == "failed"
    assert flaky_flow.run().wait() == 2
    assert flaky_flow.run().wait() == 2
    assert len(attempts) == 2


def test_without_cache_settings_nothing_is_cached() -> None:
    mixed.run("a")
    mixed.run("a")
    assert CALLS == ["plain:a", "never:a", "plain:a", "never:a"]


def test_a_flow_level_setting_applies_to_checkpoints_without_their_own() -> None:
    flow_level.run("b")
    second = flow_level.run("b")
    assert CALLS == ["plain:b", "never:b", "never:b"]  # never has cache=False of its own
    assert [c.status for c in _calls(second.exec_id)] == ["cached", "completed"]


def test_a_run_level_setting_overrides_every_checkpoint() -> None:
    mixed.options(cache=True).run("c")
    second = mixed.options(cache=True).run("c")
    assert [c.status for c in _calls(second.exec_id)] == ["cached", "cached"]
    assert CALLS == ["plain:c", "never:c"]

    CALLS.clear()
    embedding.run("d")
    off = embedding.options(cache=False).run("d")
    assert CALLS == ["embed:d", "embed:d"]
    assert _calls(off.exec_id)[0].status == "completed"
    # options() makes a copy: the flow itself keeps its settings
    assert mixed._run_cache is None
    embedding.run("d")
    assert CALLS == ["embed:d", "embed:d"]


def test_the_run_level_setting_also_applies_to_a_replay() -> None:
    embedding.run("e")
    source = embedding.run("e")
    CALLS.clear()
    replay = embedding.options(cache=False).replay(source.exec_id, from_="embed")
    assert replay.wait() == [1]
    assert CALLS == ["embed:e"]
    assert _calls(replay.exec_id)[0].status == "completed"


def test_a_replay_runs_after_the_replay_point_can_hit_the_cache() -> None:
    source = embedding.run("f g")
    replay = embedding.replay(source.exec_id, from_="embed")
    assert replay.wait() == [1, 1]
    assert CALLS == ["embed:f g"]
    [call] = _calls(replay.exec_id)
    assert (call.status, call.reused_from) == ("cached", source.exec_id)


def test_inputs_that_are_not_data_are_never_cached() -> None:
    @checkpoint(name="cache_opaque", cache=True)
    def opaque(obj: object) -> str:
        CALLS.append("opaque")
        return type(obj).__name__

    @flow(name="cache_opaque_flow")
    def opaque_flow() -> Any:
        return opaque(object())

    assert opaque_flow.run().wait() == "object"
    assert opaque_flow.run().wait() == "object"
    assert CALLS == ["opaque", "opaque"]


def test_cache_settings_are_validated() -> None:
    with pytest.raises(KitaruUsageError, match="cache must be True, False or None"):
        checkpoint(cache="yes")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(KitaruUsageError, match="cache must be True, False or None"):
        embedding.options(cache=1)  # type: ignore[arg-type]
    with pytest.raises(KitaruUsageError, match="cache must be True, False or None"):

        @flow(cache="always")  # type: ignore[call-overload]
        def bad() -> None:
            pass


def test_a_cache_hit_records_its_own_data_flow_not_the_cached_calls() -> None:
    @flow(name="cache_literal")
    def literal() -> Any:
        return embed("AB CD")

    @flow(name="cache_handed_over")
    def handed_over() -> Any:
        return embed(plain("ab cd"))

    literal.run()
    second = handed_over.run()
    assert CALLS == ["embed:AB CD", "plain:ab cd"]
    produced, hit = _calls(second.exec_id)
    assert hit.status == "cached"
    assert hit.upstream == ("plain",)
    assert hit.inputs == (produced.output_object_id,)


def test_the_same_arguments_spelled_differently_hit_the_cache() -> None:
    @checkpoint(name="cache_spelled", cache=True)
    def spelled(x: int, y: int = 1, **options: int) -> int:
        CALLS.append(f"spelled:{x},{y},{options}")
        return x + y + sum(options.values())

    @flow(name="cache_spellings")
    def spellings() -> Any:
        return [
            spelled(1),
            spelled(x=1),
            spelled(1, 1),
            spelled(y=1, x=1),
            spelled(1, a=2, b=3),
            spelled(1, b=3, a=2),
            spelled(2),
        ]

    handle = spellings.run()
    assert handle.wait() == [2, 2, 2, 2, 7, 7, 3]
    assert CALLS == ["spelled:1,1,{}", "spelled:1,1,{'a': 2, 'b': 3}", "spelled:2,1,{}"]
    statuses = [c.status for c in _calls(handle.exec_id)]
    assert statuses == ["completed", "cached", "cached", "cached", "completed", "cached", "completed"]


def test_a_changed_default_value_misses_the_cache() -> None:
    # the same bytecode, only the default differs
    @checkpoint(name="cache_default", cache=True)
    def default_one(x: int, step: int = 1) -> int:
        CALLS.append(f"step {step}")
        return x + step

    @checkpoint(name="cache_default", cache=True)
    def default_two(x: int, step: int = 2) -> int:
        CALLS.append(f"step {step}")
        return x + step

    assert default_one.fn.__code__.co_code == default_two.fn.__code__.co_code

    @flow(name="cache_defaults")
    def defaults() -> Any:
        return [default_one(1), default_two(1)]

    assert defaults.run().wait() == [2, 3]
    assert CALLS == ["step 1", "step 2"]
