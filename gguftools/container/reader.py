"""A lazy GGUF reader over a memory map.

Opening a file parses the header, the metadata and the tensor infos, and nothing else: tensor data stays
on disk until a caller asks for one tensor, and arrays (a 150k-entry vocabulary, say) are kept as views
into the map, not as one Python object per element.

Layout of a GGUF file (versions 2 and 3, ggml/docs/gguf.md in llama.cpp):

    magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count x   (key: string, value_type: u32, value)
    tensor_count x (name: string, n_dims: u32, ne: u64 x n_dims, type: u32, offset: u64)
    padding to general.alignment | tensor data (each tensor at data_offset + offset)

A string is a u64 byte length and that many bytes. Version 1 used u32 for counts and lengths. Every number
is little-endian unless the whole file is big-endian, which the version field shows.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import stat
import struct
from collections.abc import Iterator
from typing import Any

import gguf
import numpy as np

from gguftools.container.types import (
    DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    SCALAR_DTYPES,
    SCALAR_FORMATS,
    SUPPORTED_VERSIONS,
    Problem,
    ValueType,
    tensor_nbytes,
    tensor_type_name,
    value_type_name,
)
from gguftools.errors import GGUFFormatError, GGUFToolsError, UnsupportedError

MAX_ARRAY_DEPTH = 8
MAX_TENSOR_DIMS = 8


class _Truncated(Exception):
    """Raised inside the parser when a field runs past the end of the file."""

    def __init__(self, offset: int, needed: int) -> None:
        super().__init__(offset, needed)
        self.offset = offset
        self.needed = needed


class ArrayValue:
    """A GGUF array kept as a view into the file.

    Numeric arrays are numpy views (``to_numpy``); string arrays keep one offset per element in a numpy
    array, so that element ``i`` is decoded only when asked for.
    """

    def __init__(
        self,
        item_type: int,
        count: int,
        buffer: Any,
        data_offset: int,
        byte_order: str,
        string_offsets: np.ndarray | None = None,
        nested: list[ArrayValue] | None = None,
        length_format: str = "Q",
    ) -> None:
        self.item_type = item_type
        self.count = count
        self._buffer = buffer
        self._data_offset = data_offset
        self._byte_order = byte_order
        self._string_offsets = string_offsets
        self._nested = nested
        self._length_format = length_format

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Any]:
        for index in range(self.count):
            yield self[index]

    def __getitem__(self, index: int) -> Any:
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(index)
        if self.item_type == ValueType.STRING:
            return _decode_text(self.raw_string(index))
        if self.item_type == ValueType.ARRAY:
            assert self._nested is not None
            return self._nested[index]
        return self.to_numpy()[index].item()

    def raw_string(self, index: int) -> bytes:
        """Return the bytes of string element ``index``, undecoded."""
        assert self._string_offsets is not None
        start = int(self._string_offsets[index])
        length_format = self._byte_order + self._length_format
        length = struct.unpack_from(length_format, self._buffer, start)[0]
        start += struct.calcsize(length_format)
        return bytes(self._buffer[start : start + length])

    def to_numpy(self) -> np.ndarray:
        """Return a numeric array as a read-only numpy view of the file (no copy)."""
        if self.item_type not in SCALAR_DTYPES:
            raise TypeError(f"array of {value_type_name(self.item_type)} has no numpy view")
        dtype = SCALAR_DTYPES[ValueType(self.item_type)].newbyteorder(self._byte_order)
        return np.frombuffer(self._buffer, dtype=dtype, count=self.count, offset=self._data_offset)

    def to_list(self) -> list[Any]:
        """Return every element as a Python object (one object per element: avoid on large arrays)."""
        if self.item_type in SCALAR_DTYPES:
            return self.to_numpy().tolist()
        return list(self)


@dataclasses.dataclass
class MetadataField:
    """One key-value pair of the header, with the byte span it occupies in the file."""

    key: str
    raw_key: bytes
    value_type: int
    value: Any  # int, float, bool, str (bytes when not valid UTF-8) or ArrayValue
    start: int  # offset of the key's length field
    end: int  # offset just past the value

    @property
    def item_type(self) -> int | None:
        return self.value.item_type if isinstance(self.value, ArrayValue) else None

    def type_label(self) -> str:
        """Return the type as gguf-dump writes it: ``UINT32`` or ``[STRING]`` for an array of strings."""
        if isinstance(self.value, ArrayValue):
            return f"[{value_type_name(self.value.item_type)}]"
        return value_type_name(self.value_type)


@dataclasses.dataclass
class TensorInfo:
    """A tensor's header entry; the data itself is read only through ``GGUFFile.tensor_bytes``."""

    name: str
    raw_name: bytes
    ggml_shape: tuple[int, ...]  # ggml order: ne[0] is the contiguous dimension
    type_id: int
    offset: int  # relative to the start of the data section
    file: GGUFFile = dataclasses.field(repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape in numpy order (ggml order reversed): a weight matrix is [out_features, in_features]."""
        return tuple(reversed(self.ggml_shape))

    @property
    def type_name(self) -> str:
        return tensor_type_name(self.type_id)

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.ggml_shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int | None:
        return tensor_nbytes(self.type_id, self.ggml_shape)

    @property
    def absolute_offset(self) -> int:
        return self.file.data_offset + self.offset


def _decode_text(raw: bytes) -> str | bytes:
    """Decode UTF-8 text; keep the bytes when they are not valid UTF-8, so nothing is lost."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


class _Parser:
    """A cursor over the mapped file that reads GGUF fields in the file's byte order."""

    def __init__(self, buffer: Any, size: int, byte_order: str, version: int) -> None:
        self.buffer = buffer
        self.size = size
        self.byte_order = byte_order
        self.length_format = "I" if version == 1 else "Q"
        self.length_size = 4 if version == 1 else 8
        self.offset = 0

    def unpack(self, fmt: str) -> Any:
        width = struct.calcsize(fmt)
        if self.offset + width > self.size:
            raise _Truncated(self.offset, width)
        value = struct.unpack_from(self.byte_order + fmt, self.buffer, self.offset)[0]
        self.offset += width
        return value

    def length(self) -> int:
        return self.unpack(self.length_format)

    def raw_string(self) -> bytes:
        length = self.length()
        if self.offset + length > self.size:
            raise _Truncated(self.offset, length)
        raw = bytes(self.buffer[self.offset : self.offset + length])
        self.offset += length
        return raw

    def skip_string(self) -> None:
        length = self.length()
        if self.offset + length > self.size:
            raise _Truncated(self.offset, length)
        self.offset += length

    def string_offsets(self, count: int) -> np.ndarray:
        """Skip ``count`` strings and return the offset of each one's length field.

        This loop is the cost of opening a file with a large vocabulary (two arrays of about 150k strings in
        Qwen models), so it avoids method calls and keeps no Python object per string.
        """
        unpack_length = struct.Struct(self.byte_order + self.length_format).unpack_from
        buffer, width, size = self.buffer, self.length_size, self.size
        offsets = np.empty(count, dtype=np.int64)
        position = self.offset
        try:
            for index in range(count):
                offsets[index] = position
                position += width + unpack_length(buffer, position)[0]
                # checked every time: a damaged length would otherwise overflow the int64 offsets
                if position > size:
                    start = int(offsets[index])
                    raise _Truncated(start, position - start)
        except struct.error:
            raise _Truncated(position, width) from None
        self.offset = position
        return offsets

    def value(self, value_type: int, depth: int = 0) -> Any:
        if value_type == ValueType.STRING:
            return _decode_text(self.raw_string())
        if value_type == ValueType.ARRAY:
            return self.array(depth + 1)
        if value_type in SCALAR_FORMATS:
            return self.unpack(SCALAR_FORMATS[ValueType(value_type)])
        raise GGUFFormatError(f"unknown value type {value_type} at offset {self.offset - 4}")

    def array(self, depth: int) -> ArrayValue:
        if depth > MAX_ARRAY_DEPTH:
            raise GGUFFormatError(
                f"arrays nested deeper than {MAX_ARRAY_DEPTH} levels at offset {self.offset}"
            )
        item_type = self.unpack("I")
        count = self.length()
        start = self.offset
        if item_type in SCALAR_DTYPES:
            width = SCALAR_DTYPES[ValueType(item_type)].itemsize
            if count * width > self.size - start:
                raise _Truncated(start, count * width)
            self.offset += count * width
            return ArrayValue(item_type, count, self.buffer, start, self.byte_order)
        if item_type == ValueType.STRING:
            # every string is at least its length field, so a count beyond that cannot fit in the file
            if count * self.length_size > self.size - start:
                raise _Truncated(start, count * self.length_size)
            offsets = self.string_offsets(count)
            return ArrayValue(
                item_type,
                count,
                self.buffer,
                start,
                self.byte_order,
                string_offsets=offsets,
                length_format=self.length_format,
            )
        if item_type == ValueType.ARRAY:
            # an empty nested array is still its element type (u32) and its count
            smallest = 4 + self.length_size
            if count * smallest > self.size - start:
                raise _Truncated(start, count * smallest)
            nested = [self.array(depth + 1) for _ in range(count)]
            return ArrayValue(item_type, count, self.buffer, start, self.byte_order, nested=nested)
        raise GGUFFormatError(
            f"unknown array element type {item_type} at offset {start - 4 - self.length_size}"
        )


class GGUFFile:
    """One GGUF file, opened read-only through a memory map.

    ``metadata`` maps each key to its ``MetadataField`` in file order; ``tensors`` maps each tensor name to
    its ``TensorInfo`` in file order. ``problems`` lists what is wrong but still readable (a duplicate key,
    an unknown tensor type, tensor data past the end of the file), each a ``Problem`` with a rule id.

    A file cut short inside its tensor infos still opens: ``metadata`` is complete, ``tensors`` contains the
    infos before the cut, ``tensor_infos_complete`` is False and no tensor data can be read. A file cut
    short anywhere earlier raises ``GGUFFormatError``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.problems: list[Problem] = []
        self.duplicate_keys: list[str] = []
        self.metadata: dict[str, MetadataField] = {}
        self.tensors: dict[str, TensorInfo] = {}
        self.tensor_infos_complete = True
        self._file = None
        self._map: mmap.mmap | None = None
        try:
            self._open()
        except GGUFToolsError as error:
            self.close()
            if error.path is None:
                error.path = self.path
            raise

    # -- opening ---------------------------------------------------------------------------------------

    def _open(self) -> None:
        # stat before open: opening a FIFO for reading would block until a writer appears
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            raise GGUFFormatError("file not found") from None
        except OSError as error:
            raise GGUFFormatError(f"cannot read the file: {error.strerror or error}") from None
        if stat.S_ISDIR(mode):
            raise GGUFFormatError("is a folder, not a GGUF file")
        if not stat.S_ISREG(mode):
            raise GGUFFormatError("is not a regular file (a device, pipe or socket), so it cannot be a GGUF file")
        try:
            self._file = open(self.path, "rb")
        except PermissionError:
            raise GGUFFormatError("permission denied") from None
        except OSError as error:
            raise GGUFFormatError(f"cannot read the file: {error.strerror or error}") from None
        self.file_size = os.fstat(self._file.fileno()).st_size
        if self.file_size < 4:
            raise GGUFFormatError(f"not a GGUF file: only {self.file_size} bytes, too short for the magic")
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        buffer = self._map

        magic = bytes(buffer[0:4])
        if magic != GGUF_MAGIC:
            raise GGUFFormatError(f"not a GGUF file: magic is {magic!r}, expected b'GGUF'")
        if self.file_size < 8:
            raise GGUFFormatError("truncated at offset 4: the version field is missing")
        self.byte_order, self.version = self._detect_byte_order(buffer)
        if self.version not in SUPPORTED_VERSIONS and self.version != 1:
            raise UnsupportedError(
                f"GGUF version {self.version} is not supported (gguftools reads versions 1 to 3)"
            )
        if self.version == 1:
            self.problems.append(
                Problem("gguf-version-1", "GGUF version 1 is obsolete: llama.cpp no longer loads it")
            )

        parser = _Parser(buffer, self.file_size, self.byte_order, self.version)
        parser.offset = 8
        try:
            self.tensor_count = parser.length()
            self.kv_count = parser.length()
        except _Truncated:
            raise GGUFFormatError("truncated at offset 8: the tensor and key counts are missing") from None
        self.header_end = parser.offset

        self._read_metadata(parser)
        self.metadata_end = parser.offset
        self.alignment = self._alignment()
        self._read_tensor_infos(parser)
        self.tensor_infos_end = parser.offset
        self.data_offset = _align(self.tensor_infos_end, self.alignment)
        self._check_tensor_data()

    @staticmethod
    def _detect_byte_order(buffer: Any) -> tuple[str, int]:
        little = struct.unpack_from("<I", buffer, 4)[0]
        big = struct.unpack_from(">I", buffer, 4)[0]
        # A version is a small number: whichever reading is small tells the byte order.
        if little & 0xFFFF == 0 and big & 0xFFFF0000 == 0:
            return ">", big
        return "<", little

    def _read_metadata(self, parser: _Parser) -> None:
        for index in range(self.kv_count):
            start = parser.offset
            try:
                raw_key = parser.raw_string()
                value_type = parser.unpack("I")
                value = parser.value(value_type)
            except _Truncated as truncated:
                raise GGUFFormatError(
                    f"truncated in metadata entry {index + 1} of {self.kv_count} (offset {start}): "
                    f"{truncated.needed} bytes needed at offset {truncated.offset}, "
                    f"file size is {self.file_size}"
                ) from None
            except GGUFFormatError as error:
                raise GGUFFormatError(f"metadata entry {index + 1} (offset {start}): {error.message}") from None
            key = raw_key.decode("utf-8", errors="surrogateescape")
            field = MetadataField(key, raw_key, value_type, value, start, parser.offset)
            self._check_name(raw_key, "key", start)
            if key in self.metadata:
                self.duplicate_keys.append(key)
                self.problems.append(
                    Problem(
                        "gguf-duplicate-key",
                        f"duplicate key {key!r} at offsets {self.metadata[key].start} and {start}",
                    )
                )
                key = f"{key}#{start}"  # keep both; later lookups by the plain key see the first
            self.metadata[key] = field

    def _check_name(self, raw: bytes, kind: str, offset: int) -> None:
        """Record an empty key or tensor name, or one that is not valid UTF-8 (the specification requires it)."""
        if not raw:
            self.problems.append(Problem(f"gguf-empty-{kind}", f"empty {kind} name at offset {offset}"))
            return
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            escaped = raw.decode("utf-8", errors="backslashreplace")
            self.problems.append(
                Problem("gguf-invalid-utf8", f"{kind} name at offset {offset} is not valid UTF-8: '{escaped}'")
            )

    def _alignment(self) -> int:
        field = self.metadata.get("general.alignment")
        if field is None:
            return DEFAULT_ALIGNMENT
        value = field.value
        if field.value_type != ValueType.UINT32:
            self.problems.append(
                Problem(
                    "gguf-alignment",
                    f"general.alignment has type {field.type_label()}, expected UINT32; "
                    f"using the default {DEFAULT_ALIGNMENT}",
                )
            )
            return DEFAULT_ALIGNMENT
        if value <= 0 or value & (value - 1) != 0:
            self.problems.append(
                Problem(
                    "gguf-alignment",
                    f"general.alignment is {value}, expected a power of two; "
                    f"using the default {DEFAULT_ALIGNMENT}",
                )
            )
            return DEFAULT_ALIGNMENT
        return value

    def _read_tensor_infos(self, parser: _Parser) -> None:
        for index in range(self.tensor_count):
            start = parser.offset
            try:
                raw_name = parser.raw_string()
                n_dims = parser.unpack("I")
                if n_dims > MAX_TENSOR_DIMS:
                    raise GGUFFormatError(
                        f"tensor info {index} (offset {start}) has {n_dims} dimensions, "
                        f"at most {MAX_TENSOR_DIMS} are allowed"
                    )
                ggml_shape = tuple(parser.length() for _ in range(n_dims))
                type_id = parser.unpack("I")
                offset = parser.unpack("Q")
            except _Truncated as truncated:
                # The metadata before this point is intact, so keep it and stop here.
                self.tensor_infos_complete = False
                parser.offset = start
                self.problems.append(
                    Problem(
                        "gguf-truncated",
                        f"truncated in tensor info {index + 1} of {self.tensor_count} (offset {start}): "
                        f"{truncated.needed} bytes needed at offset {truncated.offset}, past the end of the file "
                        f"({self.file_size} bytes); the tensors from this one on and all tensor data are missing",
                    )
                )
                return
            name = raw_name.decode("utf-8", errors="surrogateescape")
            self._check_name(raw_name, "tensor", start)
            info = TensorInfo(name, raw_name, ggml_shape, type_id, offset, self)
            if name in self.tensors:
                self.problems.append(
                    Problem("gguf-duplicate-tensor", f"duplicate tensor {name!r} (tensor info {index + 1})")
                )
                continue
            if info.nbytes is None:
                if type_id not in gguf.GGMLQuantizationType._value2member_map_:
                    self.problems.append(
                        Problem("gguf-unknown-tensor-type", f"tensor {name!r} has unknown type id {type_id}")
                    )
                else:
                    self.problems.append(
                        Problem(
                            "gguf-tensor-blocks",
                            f"tensor {name!r} of type {info.type_name} has a first dimension of "
                            f"{ggml_shape[0]}, not a whole number of blocks",
                        )
                    )
            self.tensors[name] = info

    def _check_tensor_data(self) -> None:
        """Record misaligned tensors, and name the first tensor (in data order) that ends past the end."""
        if not self.tensor_infos_complete:
            return
        past_end: list[TensorInfo] = []
        for info in sorted(self.tensors.values(), key=lambda info: info.offset):
            nbytes = info.nbytes
            if nbytes is None:
                continue
            if info.offset % self.alignment != 0:
                self.problems.append(
                    Problem(
                        "gguf-tensor-alignment",
                        f"tensor {info.name!r} starts at data offset {info.offset}, "
                        f"not a multiple of the alignment {self.alignment}",
                    )
                )
            if self.data_offset + info.offset + nbytes > self.file_size:
                past_end.append(info)
        if past_end:
            first = past_end[0]
            end = self.data_offset + first.offset + (first.nbytes or 0)
            more = f"; {len(past_end) - 1} more tensor(s) after it are cut too" if len(past_end) > 1 else ""
            self.problems.append(
                Problem(
                    "gguf-truncated",
                    f"tensor {first.name!r} ends at offset {end}, past the end of the file "
                    f"({self.file_size} bytes): the file is truncated{more}",
                )
            )

    # -- access ----------------------------------------------------------------------------------------

    @property
    def architecture(self) -> str | None:
        value = self.get("general.architecture")
        return value if isinstance(value, str) else None

    def get(self, key: str, default: Any = None) -> Any:
        """Return a key's value (a scalar, a str, bytes for invalid UTF-8, or an ``ArrayValue``)."""
        field = self.metadata.get(key)
        return default if field is None else field.value

    def tensor_bytes(self, name: str) -> np.ndarray:
        """Return a tensor's raw bytes as a read-only uint8 view of the memory map."""
        info = self._tensor_info(name)
        if not self.tensor_infos_complete:
            raise GGUFFormatError(
                f"tensor {name!r}: the file is truncated in its tensor infos, so no tensor data can be located",
                self.path,
            )
        nbytes = info.nbytes
        if nbytes is None:
            raise UnsupportedError(f"tensor {name!r} has type {info.type_name}, which gguftools cannot size", self.path)
        start = info.absolute_offset
        if start + nbytes > self.file_size:
            raise GGUFFormatError(
                f"tensor {name!r} needs bytes {start} to {start + nbytes}, past the end of the file "
                f"({self.file_size} bytes)",
                self.path,
            )
        return np.frombuffer(self._map, dtype=np.uint8, count=nbytes, offset=start)

    def dequantize(self, name: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        """Return a tensor as float32 in numpy order, dequantized through ``gguf.quants``.

        With ``rows=(start, stop)``, only those rows of the outermost numpy dimension are read and
        dequantized: a slice of a [vocab, d] matrix costs that slice's memory, not the whole matrix's.
        Quantization blocks never cross a row, because a row is a whole number of blocks.
        """
        info = self._tensor_info(name)
        raw = self.tensor_bytes(name)
        shape = info.shape
        if rows is not None:
            start, stop = rows
            outer = shape[0] if shape else 1
            if not 0 <= start <= stop <= outer:
                raise GGUFFormatError(f"tensor {name!r}: rows {start} to {stop} are outside 0 to {outer}", self.path)
            row_bytes = len(raw) // outer if outer else 0
            raw = raw[start * row_bytes : stop * row_bytes]
            shape = (stop - start, *shape[1:])
        try:
            qtype = gguf.GGMLQuantizationType(info.type_id)
        except ValueError:
            raise UnsupportedError(f"tensor {name!r} has unknown type id {info.type_id}", self.path) from None
        if self.byte_order == ">":
            if qtype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                raise UnsupportedError(
                    f"tensor {name!r}: type {info.type_name} in a big-endian file is not supported", self.path
                )
            dtype = np.dtype(">f4") if qtype == gguf.GGMLQuantizationType.F32 else np.dtype(">f2")
            return raw.view(dtype).astype(np.float32).reshape(shape)
        if qtype == gguf.GGMLQuantizationType.F32:
            return raw.view(np.float32).reshape(shape)
        if qtype == gguf.GGMLQuantizationType.F16:
            return raw.view(np.float16).astype(np.float32).reshape(shape)
        try:
            values = gguf.quants.dequantize(raw, qtype)
        except NotImplementedError:
            raise UnsupportedError(
                f"tensor {name!r} has type {info.type_name}, which gguf-py {_gguf_version()} cannot dequantize",
                self.path,
            ) from None
        return np.asarray(values, dtype=np.float32).reshape(shape)

    def _tensor_info(self, name: str) -> TensorInfo:
        info = self.tensors.get(name)
        if info is None:
            raise GGUFFormatError(f"tensor {name!r} not found", self.path)
        return info

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # numpy views still point into the map; it closes when they are gone
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


def _gguf_version() -> str:
    try:
        from importlib.metadata import version

        return version("gguf")
    except Exception:  # noqa: BLE001 - only for an error message
        return "(unknown version)"
