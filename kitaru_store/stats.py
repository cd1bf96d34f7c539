"""Store statistics: logical vs unique vs stored bytes, dedup and compression ratios, file size."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from . import codec, config
from . import manifest_store as ms

if TYPE_CHECKING:
    from .repository import Repository


@dataclass
class Stats:
    executions: int = 0
    entries: int = 0
    objects: int = 0
    chunked_values: int = 0
    logical_bytes: int = 0  # sum of the sizes of every entry of every execution
    unique_bytes: int = 0  # uncompressed bytes of every stored data record (after dedup)
    stored_bytes: int = 0  # bytes of the records as stored (after compression)
    file_bytes: int = 0  # size of the LMDB data file
    compressed_objects: int = 0

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.unique_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = asdict(self)
        out["dedup_ratio"] = round(self.dedup_ratio, 3)
        out["compression_ratio"] = round(self.compression_ratio, 3)
        return out


def compute(repo: Repository) -> Stats:
    st = Stats()
    backend = repo._backend()
    for _, m in ms.walk(backend):
        if isinstance(m, Exception):
            raise m
        st.executions += 1
        st.entries += len(m.entries)
        st.logical_bytes += sum(e.size for e in m.entries)
    start = b""
    while True:
        n = 0
        last = None
        with backend.read(buffers=True) as rt:
            cur = rt.txn.cursor(db=rt._dbs[b"objects"])
            ok = cur.set_range(start)
            while ok and n < 4096:
                last = bytes(cur.key())
                record = cur.value()
                st.objects += 1
                st.stored_bytes += len(record)
                try:
                    kind, codec_id = codec.header(record)
                    if kind == codec.KIND_INDEX:
                        st.chunked_values += 1
                    else:
                        st.unique_bytes += codec.content_size(record)
                        st.compressed_objects += codec_id == codec.CODEC_ZSTD
                except ValueError:
                    pass  # fsck reports damaged records
                n += 1
                ok = cur.next()
        if last is None or n < 4096:
            break
        start = last + b"\x00"
    try:
        st.file_bytes = os.path.getsize(repo.root / config.DB_DIR / "data.mdb")
    except OSError:
        st.file_bytes = 0
    return st
