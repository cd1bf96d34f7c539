"""Store statistics: logical vs unique vs stored bytes, dedup and compression ratios, file size."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from . import codec, layout
from . import manifest_store as ms

if TYPE_CHECKING:
    from .repository import Repository

SCAN_BATCH = 4096  # object records per read transaction


@dataclass
class Stats:
    executions: int = 0
    entries: int = 0
    objects: int = 0
    chunked_values: int = 0
    logical_bytes: int = 0  # sum of the sizes of every entry of every execution
    unique_bytes: int = 0  # uncompressed bytes of every stored data record (after dedup)
    stored_bytes: int = 0  # bytes of the records as stored (after compression)
    file_bytes: int = 0  # size of the LMDB data file (0 for an in-memory store)
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
    kv = repo.kv
    for _, m in ms.walk(kv):
        if isinstance(m, Exception):
            raise m
        st.executions += 1
        st.entries += len(m.entries)
        st.logical_bytes += sum(e.size for e in m.entries)
    for batch in kv.batches(layout.OBJECTS, batch=SCAN_BATCH):
        for _, record in batch:
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
    maintenance = kv.maintenance()
    st.file_bytes = maintenance.file_size() if maintenance is not None else 0
    return st
