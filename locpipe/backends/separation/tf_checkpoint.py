"""Read a TensorFlow TensorBundle checkpoint (``model.index`` + ``model.data-*``) without TensorFlow.

Why by hand: the Spleeter weights we use ship as a TF checkpoint, and TensorFlow pins numpy<2,
which clashes with the rest of the environment. The format is small and stable:

* ``model.index`` is an SSTable in LevelDB's table format: data blocks of prefix-compressed
  key/value entries (each block followed by a 1-byte compression type and a masked CRC32C),
  an index block pointing at them, and a 48-byte footer holding the metaindex and index block
  handles and a magic number. Keys are variable names; the empty key holds a header.
* Each value is a ``BundleEntryProto``: dtype, shape, shard id, byte offset and size in the
  data shard, and a CRC32C of the bytes. The few protobuf fields are decoded here with varints.
* Tensors are raw little-endian bytes in ``model.data-<shard>-of-<n>``.

TF writes index blocks uncompressed by default; a compressed block is reported as an error
naming the file rather than guessed at.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
#: TensorFlow DataType enum values -> numpy little-endian dtypes (the ones a weight file holds)
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 14: "<u2",
          17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8"}


class CheckpointError(ValueError):
    """The checkpoint files are missing, truncated or not in the expected format."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one variable's bytes live (a decoded ``BundleEntryProto``)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None


# --------------------------------------------------------------------------- pure decoding


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError("varint longer than 64 bits")


def proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Top-level (field number, value) pairs of a protobuf message; varints as int, others as bytes."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise CheckpointError("truncated protobuf message")
        fields.append((number, value))
    return fields


def decode_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated ``dim`` (field 2) each with ``size`` (field 1)."""
    dims = []
    for number, value in proto_fields(buf):
        if number == 2 and isinstance(value, bytes):
            size = next((v for n, v in proto_fields(value) if n == 1), 0)
            dims.append(int(size) if isinstance(size, int) else 0)
        elif number == 3 and value:
            raise CheckpointError("tensor of unknown rank")
    return tuple(dims)


def decode_entry(name: str, buf: bytes) -> TensorEntry:
    """BundleEntryProto: dtype=1, shape=2, shard_id=3, offset=4, size=5, crc32c=6 (fixed32), slices=7."""
    dtype = shard = offset = size = 0
    shape: tuple[int, ...] = ()
    crc = None
    for number, value in proto_fields(buf):
        if number == 1:
            dtype = int(value)  # type: ignore[arg-type]
        elif number == 2:
            shape = decode_shape(value)  # type: ignore[arg-type]
        elif number == 3:
            shard = int(value)  # type: ignore[arg-type]
        elif number == 4:
            offset = int(value)  # type: ignore[arg-type]
        elif number == 5:
            size = int(value)  # type: ignore[arg-type]
        elif number == 6:
            crc = struct.unpack("<I", value)[0]  # type: ignore[arg-type]
        elif number == 7:
            raise CheckpointError(f"{name}: sliced (partitioned) variables are not supported")
    return TensorEntry(name, dtype, shape, shard, offset, size, crc)


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) in pure Python: only used on the small index blocks."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """LevelDB stores CRCs masked (rotated and offset) so CRCs of CRCs stay well-distributed."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (prefix-compressed keys, restart array at the end)."""
    if len(block) < 4:
        raise CheckpointError("table block shorter than its restart count")
    restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise CheckpointError("table block restart array overruns the block")
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_len, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > end:
            raise CheckpointError("corrupt table block entry")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def block_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    """(offset, size, next position) of a BlockHandle (two varints)."""
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return offset, size, pos


def read_block(table: bytes, offset: int, size: int, where: str) -> bytes:
    """One block's contents after checking its trailer (compression type and CRC)."""
    if offset + size + BLOCK_TRAILER_SIZE > len(table):
        raise CheckpointError(f"{where}: block at {offset} runs past the end of the file")
    data = table[offset:offset + size]
    kind = table[offset + size]
    stored = struct.unpack("<I", table[offset + size + 1:offset + size + 5])[0]
    if crc32c(table[offset:offset + size + 1]) != unmask_crc(stored):
        raise CheckpointError(f"{where}: block at {offset} fails its CRC32C check")
    if kind != 0:
        raise CheckpointError(f"{where}: block at {offset} is compressed (type {kind}); only uncompressed "
                              "tables are supported (TensorFlow's default)")
    return data


def parse_index(table: bytes, where: str = "model.index") -> dict[str, TensorEntry]:
    """All tensor entries of an index file's bytes, by variable name (header entry skipped)."""
    if len(table) < FOOTER_SIZE:
        raise CheckpointError(f"{where}: {len(table)} bytes is too short for an SSTable")
    footer = table[-FOOTER_SIZE:]
    if struct.unpack("<Q", footer[-8:])[0] != TABLE_MAGIC:
        raise CheckpointError(f"{where}: not an SSTable (bad magic number)")
    _, _, pos = block_handle(footer)  # metaindex: empty for TensorBundle
    index_offset, index_size, _ = block_handle(footer, pos)
    entries: dict[str, TensorEntry] = {}
    for _, handle in block_entries(read_block(table, index_offset, index_size, where)):
        offset, size, _ = block_handle(handle)
        for key, value in block_entries(read_block(table, offset, size, where)):
            if key:  # the empty key holds the BundleHeaderProto
                name = key.decode("utf-8")
                entries[name] = decode_entry(name, value)
    return entries


# --------------------------------------------------------------------------- I/O


class Checkpoint:
    """A TensorBundle checkpoint opened by its prefix (e.g. ``.../2stems/model``)."""

    def __init__(self, prefix: Path | str):
        self.prefix = Path(prefix)
        index = self.prefix.with_name(self.prefix.name + ".index")
        if not index.is_file():
            raise CheckpointError(f"{index}: checkpoint index not found")
        self.entries = parse_index(index.read_bytes(), str(index))
        self._shards = sorted(self.prefix.parent.glob(self.prefix.name + ".data-*-of-*"))
        if not self._shards:
            raise CheckpointError(f"{self.prefix}.data-*: checkpoint data not found")

    def names(self) -> list[str]:
        return sorted(self.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: e.shape for name, e in sorted(self.entries.items())}

    def tensor(self, name: str) -> np.ndarray:
        """The variable's value as a numpy array (read from its shard at its offset)."""
        if name not in self.entries:
            raise CheckpointError(f"{self.prefix}: no variable named {name!r}")
        entry = self.entries[name]
        if entry.dtype not in DTYPES:
            raise CheckpointError(f"{self.prefix}: {name} has unsupported dtype enum {entry.dtype}")
        dtype = np.dtype(DTYPES[entry.dtype])
        count = int(np.prod(entry.shape)) if entry.shape else 1
        if count * dtype.itemsize != entry.size:
            raise CheckpointError(f"{self.prefix}: {name} holds {entry.size} bytes, shape {entry.shape} "
                                  f"needs {count * dtype.itemsize}")
        shard = self._shard(entry.shard_id)
        with open(shard, "rb") as fh:
            fh.seek(entry.offset)
            raw = fh.read(entry.size)
        if len(raw) != entry.size:
            raise CheckpointError(f"{shard}: truncated reading {name}")
        return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()

    def _shard(self, shard_id: int) -> Path:
        total = len(self._shards)
        path = self.prefix.with_name(f"{self.prefix.name}.data-{shard_id:05d}-of-{total:05d}")
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint shard missing")
        return path
