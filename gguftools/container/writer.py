"""A byte-preserving GGUF writer: change metadata keys, keep everything else as it was.

The new file is assembled from the old one's byte spans: the header with a new key count, every unchanged
key-value pair copied byte for byte (so its type, its order and any invalid UTF-8 survive), the changed or
added pairs encoded in the file's own byte order, the tensor infos copied unchanged, padding to the same
alignment, then the tensor data section copied unchanged. Tensor offsets are relative to the data section,
so they stay valid when the header grows or shrinks.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Any, BinaryIO

from gguftools.container.reader import GGUFFile
from gguftools.container.types import GGUF_MAGIC, SCALAR_FORMATS, ValueType
from gguftools.errors import EditError

COPY_CHUNK = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class NewValue:
    """A scalar or string value to write under a key."""

    value_type: ValueType
    value: Any


def encode_value(value: NewValue, byte_order: str) -> bytes:
    """Encode a scalar or string value (type id and payload) as GGUF bytes."""
    head = struct.pack(byte_order + "I", value.value_type)
    if value.value_type == ValueType.STRING:
        raw = value.value.encode("utf-8") if isinstance(value.value, str) else bytes(value.value)
        return head + struct.pack(byte_order + "Q", len(raw)) + raw
    if value.value_type in SCALAR_FORMATS:
        return head + struct.pack(byte_order + SCALAR_FORMATS[value.value_type], value.value)
    raise ValueError(f"cannot encode a value of type {value.value_type.name}")


def encode_key(key: str, byte_order: str) -> bytes:
    raw = key.encode("utf-8")
    return struct.pack(byte_order + "Q", len(raw)) + raw


def write_with_metadata(source: GGUFFile, changes: dict[str, NewValue | None], out: BinaryIO) -> None:
    """Write ``source`` to ``out`` with the keys in ``changes`` set (or removed when the value is None).

    A changed key keeps its position; a new key goes after the last one. Raises ``EditError`` for files this
    writer cannot reproduce exactly (GGUF version 1, duplicate keys, tensor data past the end of the file).
    """
    if source.version == 1:
        raise EditError("GGUF version 1 files cannot be edited; convert the file to version 3 first", source.path)
    if source.duplicate_keys:
        raise EditError(
            f"the file has duplicate keys ({', '.join(sorted(set(source.duplicate_keys)))}); "
            f"refusing to edit it",
            source.path,
        )
    if "general.alignment" in changes:
        raise EditError("changing general.alignment would move the tensor data; not supported", source.path)
    truncated = [problem for problem in source.problems if "past the end of the file" in problem]
    if truncated:
        raise EditError(f"refusing to edit a truncated file: {truncated[0]}", source.path)

    order = source.byte_order
    buffer = source._map  # noqa: SLF001 - the writer and reader share the container's internals
    assert buffer is not None

    pairs: list[bytes] = []
    remaining = dict(changes)
    for key, field in source.metadata.items():
        if key in remaining:
            new_value = remaining.pop(key)
            if new_value is not None:
                pairs.append(encode_key(key, order) + encode_value(new_value, order))
            continue
        pairs.append(bytes(buffer[field.start : field.end]))
    for key, new_value in remaining.items():
        if new_value is not None:
            pairs.append(encode_key(key, order) + encode_value(new_value, order))

    header = GGUF_MAGIC + struct.pack(order + "IQQ", source.version, source.tensor_count, len(pairs))
    out.write(header)
    for pair in pairs:
        out.write(pair)
    out.write(buffer[source.metadata_end : source.tensor_infos_end])
    position = len(header) + sum(len(pair) for pair in pairs) + (source.tensor_infos_end - source.metadata_end)
    padding = (-position) % source.alignment
    out.write(b"\0" * padding)
    out.flush()
    _copy_range(source, source.data_offset, source.file_size, out)


def _copy_range(source: GGUFFile, start: int, end: int, out: BinaryIO) -> None:
    """Copy bytes [start, end) of the source file to ``out``, in the kernel where it can."""
    assert source._file is not None  # noqa: SLF001
    in_fd = source._file.fileno()  # noqa: SLF001
    out_fd = out.fileno()
    offset = start
    copy_file_range = getattr(os, "copy_file_range", None)
    while offset < end:
        count = min(COPY_CHUNK, end - offset)
        copied = 0
        if copy_file_range is not None:
            try:
                copied = copy_file_range(in_fd, out_fd, count, offset)
            except OSError as error:
                if error.errno not in (18, 22, 38, 95):  # EXDEV, EINVAL, ENOSYS, EOPNOTSUPP: fall back
                    raise
                copy_file_range = None
        if copied == 0:
            chunk = os.pread(in_fd, count, offset)
            if not chunk:
                raise EditError(f"the file shrank while it was copied (at offset {offset})", source.path)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out_fd, view) :]
            copied = len(chunk)
        offset += copied
