"""fsck: re-hash objects, check that every manifest entry points at a stored object, check indexes.

Everything is read in short read transactions (kv.Store's batched scans), never one long snapshot. A full
fsck checks every object, manifest and index key; with ``sample`` it checks that fraction of the
objects, and the same fraction of the manifests and of the keys of each index, chosen at random
(``seed`` repeats a choice) without listing every key first.

Right while writers run: every check is made in one read transaction (a snapshot), or, where a
pass looks across transactions (an index key against the manifests), it only makes a suspect.
Every problem a pass finds names its *subject* (an object, a manifest, an index key, a ref, a
memory record); before anything is reported, each subject is checked again on its own, in one
fresh snapshot (``_confirm``), and only what that finds is reported. A healthy store written
meanwhile is consistent in every snapshot, so it yields nothing; damage stays and is reported.

Adding a check: one that looks at a manifest (and what it names) goes in
``_check_manifest_batch``, which also re-checks a suspect manifest; one over another database
adds a subject kind to ``_RECHECK`` with its function that checks one key in one snapshot.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from . import checksum, ids, layout, memory, objects, reachability, summary
from . import manifest_store as ms
from . import manifests as mf
from .errors import CorruptObjectError, KitaruError, ObjectNotFoundError, StoreFormatError

if TYPE_CHECKING:
    from .kv import ReadTxn, Store
    from .repository import Repository

Progress = Callable[[str, int, int], None]
Subject = tuple[str, bytes]  # (kind: "object", "manifest", db name of an index, "ref", "memory",
# "parts" (the keys of one execution key in PARTS); key)

OBJECT_BATCH = 256  # objects re-hashed per read transaction (and subjects re-checked)
MANIFEST_BATCH = 2048  # manifests checked per read transaction (as kv.Store.scan reads them)
JOINED_BATCH = 256  # manifests read with their parts per read transaction (fewer objects alive at once)
WALK_BATCH = 16_384  # keys read per read transaction while picking a sample or counting


@dataclass(frozen=True)
class Problem:
    kind: str  # corrupt-object, newer-format, missing-object, bad-manifest, index-mismatch,
    # orphan-part, missing-touch, bad-memory-record, bad-summary
    detail: str
    object_id: str | None = None
    exec_id: str | None = None
    name: str | None = None


@dataclass
class FsckReport:
    objects_total: int = 0
    objects_checked: int = 0
    manifests_total: int = 0
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


class _Suspects:
    """Problems a pass found, by subject, until ``_confirm`` re-checks them."""

    def __init__(self) -> None:
        self.by_subject: dict[Subject, list[Problem]] = {}

    def add(self, subject: Subject, problem: Problem) -> None:
        self.by_subject.setdefault(subject, []).append(problem)


def check(
    repo: Repository,
    *,
    sample: float | int | None = None,
    progress: Progress | None = None,
    seed: int | None = None,
) -> FsckReport:
    """Verify the store.

    ``sample``: a fraction (a float, 0 < f <= 1) or a count (an int) of objects to re-hash. The
    manifests and the keys of each index are then sampled at the same fraction (for a count: the
    count over the number of objects), at least one of each when the fraction is not 0.
    Without ``sample``, or with a fraction of 1, everything is checked.
    """
    report = FsckReport()
    suspects = _Suspects()
    kv = repo.kv
    with kv.read() as rt:
        n_objects = rt.count(layout.OBJECTS)
        n_manifests = rt.count(layout.MANIFESTS)
    rng = random.Random(seed)
    fraction = 1.0
    picks: list[int] | None = None  # positions of the objects to check; None: every object
    if sample is not None:
        # A float up to 1.0 is a fraction (1.0: everything); an int is a count.
        if isinstance(sample, float) and sample <= 1:
            n, fraction = int(n_objects * sample), max(sample, 0.0)
        else:
            n = int(sample)
            fraction = min(max(n, 0) / n_objects, 1.0) if n_objects else float(n > 0)
        n = min(max(n, 0), n_objects)
        if fraction < 1:
            # The same positions random.sample would pick from a list of every key.
            picks = sorted(rng.sample(range(n_objects), n))
    if picks is None:
        report.objects_total = _check_objects(
            kv, _all_keys(kv, layout.OBJECTS, OBJECT_BATCH), n_objects, report, suspects, progress
        )
    else:
        report.objects_total = n_objects
        _check_objects(kv, _keys_at(kv, layout.OBJECTS, picks), len(picks), report, suspects, progress)
    report.manifests_total = n_manifests
    if fraction >= 1:
        _check_manifests(kv, report, suspects, progress, n_manifests)
    else:
        _check_sample(kv, report, suspects, progress, fraction, rng)
    for kind, db in (("ref", layout.REFS), ("memory", layout.MEMORY), ("summary", layout.EXEC_TIME)):
        _check_each(kv, kind, _all_keys(kv, db, OBJECT_BATCH), suspects)
    report.problems.extend(_confirm(kv, suspects))
    return report


def _confirm(kv: Store, suspects: _Suspects) -> list[Problem]:
    """The problems that each suspect subject shows when checked again on its own, in one fresh
    snapshot (a read transaction per OBJECT_BATCH subjects), in the order they were found."""
    confirmed: list[Problem] = []
    for chunk in _chunks(suspects.by_subject, OBJECT_BATCH):
        with kv.read(buffers=True) as rt:
            for kind, key in chunk:
                confirmed.extend(_RECHECK[kind](rt, kind, key))
    return confirmed


def _check_each(kv: Store, kind: str, keys: Iterable[bytes], suspects: _Suspects) -> None:
    """A pass that checks each key of a database on its own, OBJECT_BATCH keys per snapshot."""
    for chunk in _chunks(keys, OBJECT_BATCH):
        with kv.read(buffers=True) as rt:
            for key in chunk:
                for problem in _RECHECK[kind](rt, kind, key):
                    suspects.add((kind, key), problem)


# --- walking keys ------------------------------------------------------------------------------


def _all_keys(kv: Store, db: bytes, batch: int) -> Iterator[bytes]:
    """Every key of ``db`` in order, ``batch`` keys per read transaction."""
    for keys in kv.key_batches(db, batch=batch):
        yield from keys
        del keys  # one batch in memory at a time


def _keys_at(kv: Store, db: bytes, positions: Sequence[int]) -> Iterator[bytes]:
    """The keys of ``db`` at the sorted ``positions`` (0 is the first key), in order.

    The keys are read WALK_BATCH per read transaction (no value is read). Positions past the
    last key are skipped (the database shrank meanwhile).
    """
    todo = iter(positions)
    target = next(todo, None)
    pos = 0  # the position of the first key of ``keys``
    for keys in kv.key_batches(db, batch=WALK_BATCH):
        while target is not None and target < pos + len(keys):
            yield keys[target - pos]
            target = next(todo, None)
        if target is None:
            return
        pos += len(keys)
        del keys  # one batch in memory at a time


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sample_positions(rng: random.Random, total: int, fraction: float) -> list[int]:
    """Sorted random positions: ``fraction`` of ``total``, rounded up."""
    n = min(total, math.ceil(total * fraction))
    return sorted(rng.sample(range(total), n))


# --- objects -----------------------------------------------------------------------------------


def _check_objects(
    kv: Store,
    keys: Iterator[bytes],
    total: int,
    report: FsckReport,
    suspects: _Suspects,
    progress: Progress | None,
) -> int:
    """Re-hash the objects ``keys`` names; returns how many keys it went through."""
    done = 0
    for chunk in _chunks(keys, OBJECT_BATCH):
        with kv.read(buffers=True) as rt:
            for key in chunk:
                for problem in _object_problems(rt, "object", key):
                    suspects.add(("object", key), problem)
                report.objects_checked += 1
        done += len(chunk)
        if progress:
            progress("objects", done, max(total, done))
    return done


def _object_problems(rt: ReadTxn, _kind: str, key: bytes) -> list[Problem]:
    """What is wrong with one object in this snapshot (nothing if it is not stored: swept)."""
    found: list[Problem] = []
    try:
        objects.read(rt, key, exact=True)  # a record holds its frame and nothing more
    except ObjectNotFoundError as exc:
        if exc.object_id == key.hex():
            return found  # swept since listed
        found.append(Problem("corrupt-object", exc.message, object_id=key.hex()))
    except CorruptObjectError as exc:
        found.append(Problem("corrupt-object", exc.message, object_id=key.hex()))
    except StoreFormatError as exc:
        # A newer record or chunk index format, or a damaged version byte: this kitaru cannot
        # vouch for the object. Reported, and the check goes on.
        found.append(Problem("newer-format", exc.message, object_id=key.hex()))
    if not rt.has(layout.TOUCH, key):
        found.append(Problem("missing-touch", "object has no touch time", object_id=key.hex()))
    return found


# --- manifests ---------------------------------------------------------------------------------


@dataclass
class _Found:
    """What the manifest checks found in the indexes: the keys they account for, counted."""

    time_keys: int = 0  # decoded manifests whose exec_time key exists
    flow_keys: int = 0  # ... whose exec_flow key exists
    artifact_keys: int = 0  # artifact ids of decoded manifests indexed to their execution
    unreadable: set[bytes] = field(default_factory=set)  # undecodable manifests: not held against


def _decode(
    rt: ReadTxn,
    key: bytes,
    raw: memoryview,
    suspects: _Suspects | None = None,
    keys: ms.PartKeys | None = None,
) -> mf.Manifest | Problem:
    """The manifest (its head ``raw`` and its part records), or the bad-manifest problem that
    keeps it from being checked; with ``suspects``, the problems of its keys in PARTS that no
    reader looks at go there too. ``keys``: its keys in PARTS, read in ``rt`` (else read here)."""
    try:
        if suspects is None:
            return ms.from_view(rt, key, raw, key.hex())
        m, found = ms.checked(rt, key, raw, key.hex(), keys)
    except (msgspec.DecodeError, KitaruError) as exc:
        return _unreadable(key, exc)
    for kind, detail in found:
        suspects.add(("manifest", key), Problem(kind, detail, exec_id=key.hex()))
    return m


def _unreadable(key: bytes, exc: Exception) -> Problem:
    return Problem("bad-manifest", f"undecodable manifest: {exc}", exec_id=key.hex())


def _record_problems(rt: ReadTxn, key: bytes, problem: Problem) -> list[Problem]:
    """The problem of an unreadable manifest, as one problem per damaged part record when its
    head reads and several of its records are damaged."""
    damaged = ms.damaged_parts(rt, key, key.hex())
    if len(damaged) < 2:
        return [problem]
    return [Problem("bad-manifest", f"undecodable manifest: {what}", exec_id=key.hex()) for what in damaged]


def _malformed(key: bytes, m: mf.Manifest) -> mf.Manifest | Problem:
    malformed = _malformed_ids(m)
    if malformed:  # it decodes, but names ids that are not ids: checking it further would fail
        return Problem("bad-manifest", f"malformed ids: {', '.join(malformed[:3])}", exec_id=key.hex())
    return m


@dataclass
class _Decoded:
    """What the checks need of a manifest (not the manifest: a batch of 2,048 decoded manifests
    kept alive would make Python's cyclic gc walk them over and over)."""

    key: bytes
    time_key: bytes
    flow_key: bytes
    names: list[str]  # of the entries, in order
    object_ids: list[str]
    object_keys: list[bytes]
    artifact_keys: list[bytes]
    others: list[tuple[str, bytes, str]]  # (object id, key, what): the roots other than entries


def _plain_hex(hex_ids: list[str], keys: list[bytes], size: int) -> bool:
    """Whether every key is ``size`` bytes, from exactly ``2 * size`` hex characters."""
    return set(map(len, keys)) <= {size} and sum(map(len, hex_ids)) == 2 * size * len(keys)


def _ids_of(key: bytes, m: mf.Manifest) -> _Decoded | Problem:
    """The keys to look up for ``m``, or the bad-manifest problem of a malformed id."""
    tkey = layout.summary_key(m.started_at, key)
    roots = reachability.manifest_roots(m)  # the entries' objects first, in order, then the others
    others = [
        (oid, reachability.describe_manifest_root(kind, label))
        for oid, kind, label in roots[len(m.entries) :]
    ]
    object_ids = [e.object_id for e in m.entries]
    artifact_ids = [e.artifact_id for e in m.entries]
    more_ids = [oid for oid, _ in others]
    try:
        # Ids spelled as written take this fast path: plain hex of the full length. Any other
        # spelling takes the slow one, through layout.object_key and layout.uuid_key, which accept some
        # (dashed uuids) and say what is wrong with the others.
        object_keys = list(map(bytes.fromhex, object_ids))
        artifact_keys = list(map(bytes.fromhex, artifact_ids))
        more_keys = list(map(bytes.fromhex, more_ids))
        plain = (
            _plain_hex(object_ids, object_keys, ids.OBJECT_ID_BYTES)
            and _plain_hex(artifact_ids, artifact_keys, ids.UUID_BYTES)
            and _plain_hex(more_ids, more_keys, ids.OBJECT_ID_BYTES)
        )
    except ValueError:
        plain = False
    if not plain:
        checked = _malformed(key, m)
        if isinstance(checked, Problem):
            return checked
        object_keys = list(map(layout.object_key, object_ids))
        artifact_keys = list(map(layout.uuid_key, artifact_ids))
        more_keys = list(map(layout.object_key, more_ids))
    return _Decoded(
        key,
        tkey,
        layout.flow_key(m.flow_name, tkey),
        [e.name for e in m.entries],
        object_ids,
        object_keys,
        artifact_keys,
        [(oid, k, what) for (oid, what), k in zip(others, more_keys, strict=True)],
    )


def _check_manifest_batch(
    rt: ReadTxn,
    batch: Sequence[tuple[bytes, memoryview, ms.PartKeys | None]],
    report: FsckReport,
    found: _Found,
    suspects: _Suspects,
) -> None:
    """Check manifests against the objects and the indexes, in one read transaction (opened
    with buffers=True: no looked-up value is copied). The lookups of the whole batch are made
    per database in key order; the problems are listed manifest by manifest, as found. Each
    manifest comes with its keys in PARTS read in ``rt`` (ms.joined), or None: read here."""
    checked: list[_Decoded | Problem] = []
    for key, raw, keys in batch:
        m = _decode(rt, key, raw, suspects, keys)
        d = m if isinstance(m, Problem) else _ids_of(key, m)
        if isinstance(d, Problem):
            found.unreadable.add(key)
        checked.append(d)
    decoded = [d for d in checked if isinstance(d, _Decoded)]
    chain = itertools.chain.from_iterable
    times = rt.present(layout.EXEC_TIME, (d.time_key for d in decoded))
    flows = rt.present(layout.EXEC_FLOW, (d.flow_key for d in decoded))
    stored = rt.present(layout.OBJECTS, chain(d.object_keys for d in decoded))
    stored |= rt.present(layout.OBJECTS, (o[1] for d in decoded for o in d.others))
    owners = rt.get_many(layout.ARTIFACTS, chain(d.artifact_keys for d in decoded))
    for (key, _, _), d in zip(batch, checked, strict=True):
        subject = ("manifest", key)
        if isinstance(d, Problem):
            for p in _record_problems(rt, key, d) if d.kind == "bad-manifest" else [d]:
                suspects.add(subject, p)
            continue
        exec_id = d.key.hex()
        report.manifests_checked += 1
        report.entries_checked += len(d.names)
        if d.time_key in times:
            found.time_keys += 1
        else:
            suspects.add(
                subject, Problem("index-mismatch", "execution missing from the time index", exec_id=exec_id)
            )
        found.flow_keys += d.flow_key in flows
        indexed_to = list(map(owners.get, d.artifact_keys))
        if stored.issuperset(d.object_keys) and indexed_to.count(d.key) == len(indexed_to):
            found.artifact_keys += len(set(d.artifact_keys))  # every entry is fine (the usual case)
        else:
            indexed: set[bytes] = set()
            for name, object_id, okey, akey, owner in zip(
                d.names, d.object_ids, d.object_keys, d.artifact_keys, indexed_to, strict=True
            ):
                if okey not in stored:
                    suspects.add(
                        subject,
                        Problem(
                            "missing-object",
                            f"entry {name!r} names an object that is not stored",
                            object_id=object_id,
                            exec_id=exec_id,
                            name=name,
                        ),
                    )
                if owner == d.key:
                    indexed.add(akey)
                else:
                    suspects.add(
                        subject,
                        Problem(
                            "index-mismatch",
                            "artifact missing from the artifact index",
                            exec_id=exec_id,
                            name=name,
                        ),
                    )
            found.artifact_keys += len(indexed)
        for object_id, okey, what in d.others:
            if okey not in stored:
                suspects.add(
                    subject,
                    Problem(
                        "missing-object", f"the {what} is not stored", object_id=object_id, exec_id=exec_id
                    ),
                )


def _check_manifest_keys(
    kv: Store,
    keys: Iterable[bytes],
    report: FsckReport,
    suspects: _Suspects,
    progress: Progress | None,
    total: int,
) -> _Found:
    found = _Found()
    done = 0
    for chunk in _chunks(keys, MANIFEST_BATCH):
        with kv.read(buffers=True) as rt:
            batch = [
                (key, raw, None) for key in chunk if (raw := rt.get_view(layout.MANIFESTS, key)) is not None
            ]
            _check_manifest_batch(rt, batch, report, found, suspects)  # (one deleted since listed: skipped)
        done += len(chunk)
        if progress:
            progress("manifests", done, max(total, done))
    return found


def _manifest_problems(rt: ReadTxn, _kind: str, key: bytes) -> list[Problem]:
    """The checks of one manifest, in this snapshot (none if it was deleted)."""
    raw = rt.get_view(layout.MANIFESTS, key)
    if raw is None:
        return []
    suspects = _Suspects()
    _check_manifest_batch(rt, [(key, raw, None)], FsckReport(), _Found(), suspects)
    return [p for found in suspects.by_subject.values() for p in found]


def _check_manifests(
    kv: Store, report: FsckReport, suspects: _Suspects, progress: Progress | None, total: int
) -> None:
    """Every manifest, with its part records, and the part keys of no manifest (orphans): one
    ordered pass over MANIFESTS and PARTS (ms.joined); then the indexes, which must name nothing
    the manifests do not account for."""
    found = _Found()
    done = 0
    for rt, batch in ms.joined(kv, batch=JOINED_BATCH):
        heads: list[tuple[bytes, memoryview, ms.PartKeys | None]] = []
        for exec_key, head, keys in batch:
            if head is not None:
                heads.append((exec_key, head, keys))
            else:
                problem = Problem(ms.ORPHAN, "part keys of an execution with no head", exec_id=exec_key.hex())
                suspects.add(("parts", exec_key), problem)
        _check_manifest_batch(rt, heads, report, found, suspects)
        done += len(heads)
        if progress and heads:
            progress("manifests", done, max(total, done))
    # The manifests found their own index keys and counted them (distinct keys, each in one
    # index only once): an index holding exactly that many keys, leaving out those that belong to
    # unreadable manifests, names nothing else. Only when a count differs (damage, or executions
    # added or deleted meanwhile) are the indexes read against the manifests key by key.
    unreadable = found.unreadable
    if not unreadable:
        with kv.read() as rt:
            counts = [rt.count(layout.EXEC_TIME), rt.count(layout.EXEC_FLOW), rt.count(layout.ARTIFACTS)]
    else:
        counts = [
            sum(
                1
                for k in _all_keys(kv, layout.EXEC_TIME, WALK_BATCH)
                if layout.summary_exec_key(k) not in unreadable
            ),
            sum(
                1
                for k in _all_keys(kv, layout.EXEC_FLOW, WALK_BATCH)
                if layout.flow_exec_key(k) not in unreadable
            ),
            sum(1 for _, v in kv.scan(layout.ARTIFACTS) if v not in unreadable),
        ]
    if counts != [found.time_keys, found.flow_keys, found.artifact_keys]:
        _check_indexes_exactly(kv, suspects)


def _check_indexes_exactly(kv: Store, suspects: _Suspects) -> None:
    """Every index key against the set of keys the manifests account for (memory: O(entries)).

    The manifests and the index keys are read in different transactions: a key that is not
    accounted for is a suspect, which ``_confirm`` checks against its manifest in one snapshot.
    """
    time_keys: set[bytes] = set()
    unreadable: set[bytes] = set()  # their time keys are not "missing": the manifest is there
    artifact_ids: set[bytes] = set()
    for key, found in ms.walk(kv):
        m = _unreadable(key, found) if isinstance(found, KitaruError) else _malformed(key, found)
        if isinstance(m, Problem):
            unreadable.add(key)
            continue
        time_keys.add(layout.summary_key(m.started_at, key))
        artifact_ids.update(layout.uuid_key(e.artifact_id) for e in m.entries)
    for tkey in _all_keys(kv, layout.EXEC_TIME, WALK_BATCH):
        if tkey not in time_keys and layout.summary_exec_key(tkey) not in unreadable:
            suspects.add(("exec_time", tkey), _index_problem(layout.EXEC_TIME, tkey))
    for fkey in _all_keys(kv, layout.EXEC_FLOW, WALK_BATCH):
        if layout.flow_summary_key(fkey) not in time_keys and layout.flow_exec_key(fkey) not in unreadable:
            suspects.add(("exec_flow", fkey), _index_problem(layout.EXEC_FLOW, fkey))
    for akey, exec_key in kv.scan(layout.ARTIFACTS):
        if akey not in artifact_ids and exec_key not in unreadable:
            suspects.add(("artifacts", akey), _index_problem(layout.ARTIFACTS, akey))


def _orphan_problems(rt: ReadTxn, _kind: str, exec_key: bytes) -> list[Problem]:
    """The keys in PARTS of an execution key with no head, in this snapshot."""
    return [Problem(kind, detail, exec_id=exec_key.hex()) for kind, detail in ms.orphans(rt, exec_key)]


# The index a suspect kind names (the kinds are the index names, as fsck reports them).
_INDEX_DB = {"exec_time": layout.EXEC_TIME, "exec_flow": layout.EXEC_FLOW, "artifacts": layout.ARTIFACTS}


def _index_problem(db: bytes, key: bytes) -> Problem:
    if db == layout.ARTIFACTS:
        return Problem("index-mismatch", f"artifact index names a missing artifact {key.hex()}")
    index = "time" if db == layout.EXEC_TIME else "flow"
    return Problem(
        "index-mismatch", f"{index} index names a missing execution", exec_id=layout.flow_exec_key(key).hex()
    )


def _index_key_problems(rt: ReadTxn, kind: str, key: bytes) -> list[Problem]:
    """Whether one index key names an execution whose manifest puts it there, in this snapshot.

    No manifest, or one with another time key or without that artifact: ``index-mismatch``. An
    unreadable manifest (reported where it is checked) is not held against the index; a key
    deleted since it was listed is no problem.
    """
    db = _INDEX_DB[kind]
    if db == layout.ARTIFACTS:
        exec_key = rt.get(layout.ARTIFACTS, key)
        if exec_key is None:
            return []
        d = _lookup(rt, exec_key)
        bad = d is None or (isinstance(d, _Decoded) and key not in set(d.artifact_keys))
    else:
        if not rt.has(db, key):
            return []
        d = _lookup(rt, layout.flow_exec_key(key))
        bad = d is None or (isinstance(d, _Decoded) and d.time_key != layout.flow_summary_key(key))
    return [_index_problem(db, key)] if bad else []


def _check_sample(
    kv: Store,
    report: FsckReport,
    suspects: _Suspects,
    progress: Progress | None,
    fraction: float,
    rng: random.Random,
) -> None:
    """A sample of the manifests, checked as a full fsck checks each; then a sample of each
    index's keys, each looked up in the manifest it names."""
    with kv.read() as rt:
        counts = {
            db: rt.count(db)
            for db in (layout.MANIFESTS, layout.EXEC_TIME, layout.EXEC_FLOW, layout.ARTIFACTS)
        }
    picks = _sample_positions(rng, counts[layout.MANIFESTS], fraction)
    _check_manifest_keys(kv, _keys_at(kv, layout.MANIFESTS, picks), report, suspects, progress, len(picks))
    for db in (layout.EXEC_TIME, layout.EXEC_FLOW, layout.ARTIFACTS):
        keys = _keys_at(kv, db, _sample_positions(rng, counts[db], fraction))
        _check_each(kv, db.decode(), keys, suspects)


def _lookup(rt: ReadTxn, key: bytes) -> _Decoded | Problem | None:
    """The manifest ``key`` as the checks see it: None if there is none, a Problem if it is
    unreadable."""
    raw = rt.get_view(layout.MANIFESTS, key)
    if raw is None:
        return None
    m = _decode(rt, key, raw)
    return m if isinstance(m, Problem) else _ids_of(key, m)


def _malformed_ids(m: mf.Manifest) -> list[str]:
    bad: list[str] = []
    for object_id, _, _ in reachability.manifest_roots(m):
        try:
            layout.object_key(object_id)
        except KitaruError:
            bad.append(repr(object_id))
    for e in m.entries:
        try:
            layout.uuid_key(e.artifact_id)
        except KitaruError:
            bad.append(repr(e.artifact_id))
    return bad


def _ref_problems(rt: ReadTxn, _kind: str, name: bytes) -> list[Problem]:
    """Every object a ref keeps (reachability.ref_roots) must be stored, in this snapshot."""
    raw = rt.get(layout.REFS, name)
    if raw is None:
        return []
    return [
        Problem(
            "missing-object",
            f"ref {name.decode(errors='replace')} names an object that is not stored",
            object_id=key.hex(),
        )
        for key in reachability.ref_roots(name, raw, reachability.inflight_stale_before())
        if not rt.has(layout.OBJECTS, key)
    ]


def _memory_problems(rt: ReadTxn, _kind: str, key: bytes) -> list[Problem]:
    raw = rt.get_view(layout.MEMORY, key)
    return [] if raw is None else [Problem(**p) for p in memory.record_problems(rt, key, raw)]


def _summary_problems(rt: ReadTxn, _kind: str, key: bytes) -> list[Problem]:
    """One execution summary (a value of the time index, what listing shows), read as listing
    reads it, in this snapshot: it must verify (its digest or checksum; a MessagePack one written
    before checksums: no unknown field, and the very bytes its manifest encodes to) and be its key's."""
    value = rt.get(layout.EXEC_TIME, key)
    if value is None:
        return []  # deleted since it was listed
    exec_id = layout.summary_exec_key(key).hex()
    try:
        mf.decode_summary(value, key=key)
    except KitaruError as exc:
        # A key no manifest accounts for is an index-mismatch, reported as such.
        owner = _manifest_at_time_key(rt, key)
        return [Problem("bad-summary", exc.message, exec_id=exec_id)] if owner is not None else []
    if not summary.is_msgpack(value) or checksum.present(value):
        return []
    m = _manifest_at_time_key(rt, key)  # written before checksums: it must be its manifest's
    if m is not None and value != mf.encode(mf.summarize(m)):
        return [Problem("bad-summary", "the summary does not match its manifest", exec_id=exec_id)]
    return []


# How each kind of subject is checked on its own, in one snapshot: by the passes that check
# each key on its own (_check_each), and by _confirm for every suspect.
_RECHECK: dict[str, Callable[[ReadTxn, str, bytes], list[Problem]]] = {
    "object": _object_problems,
    "manifest": _manifest_problems,
    "exec_time": _index_key_problems,
    "exec_flow": _index_key_problems,
    "artifacts": _index_key_problems,
    "ref": _ref_problems,
    "memory": _memory_problems,
    "summary": _summary_problems,
    "parts": _orphan_problems,
}


def _manifest_at_time_key(rt: ReadTxn, key: bytes) -> mf.Manifest | None:
    """The stored manifest whose exec_time key is ``key``, if there is one and it decodes."""
    exec_key = layout.summary_exec_key(key)
    raw = rt.get_view(layout.MANIFESTS, exec_key)
    m = None if raw is None else _decode(rt, exec_key, raw)
    return m if isinstance(m, mf.Manifest) and layout.summary_key(m.started_at, exec_key) == key else None
