"""fsck: re-hash objects, check that every manifest entry points at a stored object, check indexes."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import msgspec

from . import ids, memory, objects
from . import manifests as mf
from .errors import KitaruError, StoreFormatError

if TYPE_CHECKING:
    from .repository import Repository

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Problem:
    kind: str  # corrupt-object, newer-format, missing-object, bad-manifest, index-mismatch,
    # missing-touch, bad-memory-record
    detail: str
    object_id: str | None = None
    exec_id: str | None = None
    name: str | None = None


@dataclass
class FsckReport:
    objects_total: int = 0
    objects_checked: int = 0
    manifests_checked: int = 0
    entries_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def check(
    repo: Repository,
    *,
    sample: float | int | None = None,
    progress: Progress | None = None,
    seed: int | None = None,
) -> FsckReport:
    """Verify the store.

    ``sample``: a fraction (a float, 0 < f <= 1) or a count (an int) of objects to re-hash.
    """
    report = FsckReport()
    backend = repo._backend()
    keys = [k for k, _ in _keys(repo)]
    report.objects_total = len(keys)
    chosen = keys
    if sample is not None:
        # A float up to 1.0 is a fraction (1.0: everything); an int is a count.
        n = int(len(keys) * sample) if isinstance(sample, float) and sample <= 1 else int(sample)
        chosen = sorted(random.Random(seed).sample(keys, min(max(n, 0), len(keys))))
    for start in range(0, len(chosen), 256):
        with backend.read(buffers=True) as rt:
            for key in chosen[start : start + 256]:
                record = rt.get_view(b"objects", key)
                if record is None:
                    continue  # swept since listed
                try:
                    problem = objects.verify(rt, key)
                except StoreFormatError as exc:
                    # A newer record or chunk index format, or a damaged version byte: this kitaru
                    # cannot vouch for the object. Reported, and the check goes on.
                    report.problems.append(Problem("newer-format", exc.message, object_id=key.hex()))
                    problem = None
                if problem:
                    report.problems.append(Problem("corrupt-object", problem, object_id=key.hex()))
                if rt.get(b"touch", key) is None:
                    report.problems.append(
                        Problem("missing-touch", "object has no touch time", object_id=key.hex())
                    )
                report.objects_checked += 1
        if progress:
            progress("objects", min(start + 256, len(chosen)), len(chosen))
    _check_manifests(repo, report, progress)
    return report


def _keys(repo: Repository) -> list[tuple[bytes, None]]:
    out: list[tuple[bytes, None]] = []
    backend = repo._backend()
    start = b""
    while True:
        n = 0
        with backend.read(buffers=True) as rt:
            cur = rt.txn.cursor(db=rt._dbs[b"objects"])
            ok = cur.set_range(start)
            while ok and n < 8192:
                out.append((bytes(cur.key()), None))
                n += 1
                ok = cur.next()
        if n < 8192:
            return out
        start = out[-1][0] + b"\x00"


def _check_manifests(repo: Repository, report: FsckReport, progress: Progress | None) -> None:
    backend = repo._backend()
    total = repo.count_executions()
    seen_time_keys: set[bytes] = set()
    unreadable: set[bytes] = set()  # their time keys are not "missing": the manifest is there
    artifact_ids: set[bytes] = set()
    for n, (key, raw) in enumerate(backend.scan(b"manifests"), 1):
        exec_id = key.hex()
        try:
            m = mf.decode_manifest(raw, exec_id=exec_id)
        except (msgspec.DecodeError, KitaruError) as exc:
            report.problems.append(Problem("bad-manifest", f"undecodable manifest: {exc}", exec_id=exec_id))
            unreadable.add(key)
            continue
        malformed = _malformed_ids(m)
        if malformed:  # it decodes, but names ids that are not ids: checking it further would fail
            report.problems.append(
                Problem("bad-manifest", f"malformed ids: {', '.join(malformed[:3])}", exec_id=exec_id)
            )
            unreadable.add(key)
            continue
        report.manifests_checked += 1
        with backend.read() as rt:
            tkey = mf.time_key(m.started_at) + key
            seen_time_keys.add(tkey)
            if rt.get(b"exec_time", tkey) is None:
                report.problems.append(
                    Problem("index-mismatch", "execution missing from the time index", exec_id=exec_id)
                )
            for e in m.entries:
                report.entries_checked += 1
                if not rt.has(b"objects", ids.object_key(e.object_id)):
                    report.problems.append(
                        Problem(
                            "missing-object",
                            f"entry {e.name!r} names an object that is not stored",
                            object_id=e.object_id,
                            exec_id=exec_id,
                            name=e.name,
                        )
                    )
                if rt.get(b"artifacts", ids.uuid_key(e.artifact_id)) != key:
                    report.problems.append(
                        Problem(
                            "index-mismatch",
                            "artifact missing from the artifact index",
                            exec_id=exec_id,
                            name=e.name,
                        )
                    )
            others = [(c.output_object_id, f"checkpoint {c.invocation_id} output") for c in m.checkpoints]
            others += [(m.result_object_id, "flow result"), (m.input_object_id, "flow inputs")]
            for object_id, what in others:
                if object_id and not rt.has(b"objects", ids.object_key(object_id)):
                    report.problems.append(
                        Problem(
                            "missing-object", f"{what} is not stored", object_id=object_id, exec_id=exec_id
                        )
                    )
            artifact_ids.update(ids.uuid_key(e.artifact_id) for e in m.entries)
        if progress and n % 1000 == 0:
            progress("manifests", n, total)
    for tkey, _ in backend.scan(b"exec_time"):
        if tkey not in seen_time_keys and tkey[8:] not in unreadable:
            report.problems.append(
                Problem("index-mismatch", "time index names a missing execution", exec_id=tkey[8:].hex())
            )
    for fkey, _ in backend.scan(b"exec_flow"):
        if fkey[-24:] not in seen_time_keys and fkey[-16:] not in unreadable:
            report.problems.append(
                Problem("index-mismatch", "flow index names a missing execution", exec_id=fkey[-16:].hex())
            )
    for akey, exec_key in backend.scan(b"artifacts"):
        if akey not in artifact_ids and exec_key not in unreadable:
            report.problems.append(
                Problem("index-mismatch", f"artifact index names a missing artifact {akey.hex()}")
            )
    _check_refs(repo, report)
    report.problems.extend(Problem(**p) for p in memory.problems(backend))


def _malformed_ids(m: mf.Manifest) -> list[str]:
    bad: list[str] = []
    for object_id in mf.referenced_ids(m):
        try:
            ids.object_key(object_id)
        except KitaruError:
            bad.append(repr(object_id))
    for e in m.entries:
        try:
            ids.uuid_key(e.artifact_id)
        except KitaruError:
            bad.append(repr(e.artifact_id))
    return bad


def _check_refs(repo: Repository, report: FsckReport) -> None:
    backend = repo._backend()
    for name, raw in backend.scan(b"refs"):
        with backend.read() as rt:
            for i in range(0, len(raw), ids.OBJECT_ID_BYTES):
                key = raw[i : i + ids.OBJECT_ID_BYTES]
                if not rt.has(b"objects", key):
                    report.problems.append(
                        Problem(
                            "missing-object",
                            f"ref {name.decode(errors='replace')} names an object that is not stored",
                            object_id=key.hex(),
                        )
                    )
