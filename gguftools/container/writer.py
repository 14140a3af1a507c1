"""A byte-preserving GGUF writer: change metadata keys, keep everything else as it was.

The new file is assembled from the old one's byte spans: the header with a new key count, every unchanged
key-value pair copied byte for byte (so its type, its order and any invalid UTF-8 survive), the changed or
added pairs encoded in the file's own byte order, the tensor infos copied unchanged, padding to the same
alignment, then the tensor data section copied unchanged. Tensor offsets are relative to the data section,
so they stay valid when the header grows or shrinks.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
from collections.abc import Callable
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


def check_editable(source: GGUFFile, changes: dict[str, NewValue | None]) -> None:
    """Raise EditError if this writer cannot apply ``changes`` to ``source`` and reproduce the rest exactly.

    The writer rejects GGUF version 1, duplicate keys, a change of general.alignment, and a file cut short in
    its tensor infos or tensor data. ``new_header`` runs these checks, and ``set-mtp-source --dry-run`` runs
    them without writing.
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
    truncated = [problem for problem in source.problems if problem.rule == "gguf-truncated"]
    if truncated:
        raise EditError(f"refusing to edit a truncated file: {truncated[0]}", source.path)


def new_header(source: GGUFFile, changes: dict[str, NewValue | None]) -> bytes:
    """Build the header of ``source`` with the keys in ``changes`` set (or removed when the value is None).

    The result runs from the magic to the start of the tensor data, padding included. A changed key keeps
    its position, and a new key goes after the last one. The source header is read with ``pread``, not
    through the memory map, so that a file truncated by another process raises ``EditError`` instead of
    killing the process with SIGBUS. Raises ``EditError`` when ``check_editable`` rejects the edit.
    """
    check_editable(source, changes)

    order = source.byte_order
    old_header = read_exact(source, 0, source.tensor_infos_end)

    pairs: list[bytes] = []
    remaining = dict(changes)
    for key, field in source.metadata.items():
        if key in remaining:
            new_value = remaining.pop(key)
            if new_value is not None:
                pairs.append(encode_key(key, order) + encode_value(new_value, order))
            continue
        pairs.append(old_header[field.start : field.end])
    for key, new_value in remaining.items():
        if new_value is not None:
            pairs.append(encode_key(key, order) + encode_value(new_value, order))

    parts = [GGUF_MAGIC + struct.pack(order + "IQQ", source.version, source.tensor_count, len(pairs))]
    parts += pairs
    parts.append(old_header[source.metadata_end : source.tensor_infos_end])
    position = sum(len(part) for part in parts)
    parts.append(b"\0" * ((-position) % source.alignment))
    return b"".join(parts)


def write_with_metadata(
    source: GGUFFile,
    changes: dict[str, NewValue | None],
    out: BinaryIO,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = COPY_CHUNK,
) -> int:
    """Write ``source`` to ``out`` with the keys in ``changes`` set; return the number of bytes written.

    The header comes from ``new_header`` and the tensor data section is copied unchanged. ``progress``, when
    given, is called with the running byte count after the header and after each chunk of data.
    """
    header = new_header(source, changes)
    out.write(header)
    out.flush()
    if progress is not None:
        progress(len(header))
    copied = copy_range(source, source.data_offset, source.file_size, out.fileno(), len(header), progress, chunk_size)
    return len(header) + copied


def read_exact(source: GGUFFile, start: int, length: int) -> bytes:
    """Read ``length`` bytes of the source file at ``start`` with ``pread``; raise EditError if the file is shorter."""
    assert source._file is not None  # noqa: SLF001 - the writer and reader share the container's internals
    fd = source._file.fileno()  # noqa: SLF001
    parts = []
    offset = start
    while offset < start + length:
        chunk = os.pread(fd, min(COPY_CHUNK, start + length - offset), offset)
        if not chunk:
            raise EditError(
                f"the file is now {offset} bytes long, {source.file_size} when it was opened: "
                f"another process truncated it while it was read",
                source.path,
            )
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


# copy_file_range fails with these errors when the kernel or the file systems cannot copy between the two
# files. A plain pread/write loop does the copy then.
_NO_KERNEL_COPY = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM)


def copy_range(
    source: GGUFFile,
    start: int,
    end: int,
    out_fd: int,
    written_before: int = 0,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = COPY_CHUNK,
) -> int:
    """Copy bytes [start, end) of the source file to ``out_fd``, in the kernel where it can; return the count.

    The copy reads the file descriptor, never the memory map, so a file truncated under it raises
    ``EditError`` instead of SIGBUS.
    """
    assert source._file is not None  # noqa: SLF001
    in_fd = source._file.fileno()  # noqa: SLF001
    offset = start
    kernel_copy = getattr(os, "copy_file_range", None)
    while offset < end:
        count = min(chunk_size, end - offset)
        copied = 0
        if kernel_copy is not None:
            try:
                copied = kernel_copy(in_fd, out_fd, count, offset)
            except OSError as error:
                if error.errno not in _NO_KERNEL_COPY:
                    raise
                kernel_copy = None
        if copied == 0:
            chunk = os.pread(in_fd, count, offset)
            if not chunk:
                raise EditError(
                    f"the file ended at offset {offset} while it was copied ({source.file_size} bytes when it was "
                    f"opened): another process truncated it",
                    source.path,
                )
            view = memoryview(chunk)
            while view:
                view = view[os.write(out_fd, view) :]
            copied = len(chunk)
        offset += copied
        if progress is not None:
            progress(written_before + offset - start)
    return offset - start
