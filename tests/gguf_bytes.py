"""Pack GGUF files by hand, field by field, so that tests can build files no well-behaved writer produces.

The layout (ggml/docs/gguf.md in llama.cpp): magic, version u32, tensor count and key count (u64, or u32 in
version 1), the key-value pairs, the tensor infos, padding to the alignment, then the tensor data. Every
number uses the byte order given to ``Packer``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# GGUF value type ids
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
SCALAR_FORMATS = {
    UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i", FLOAT32: "f", BOOL: "?",
    UINT64: "Q", INT64: "q", FLOAT64: "d",
}
# ggml tensor type ids
F32, F16 = 0, 1


@dataclass
class Tensor:
    name: str | bytes
    ggml_shape: tuple[int, ...]  # ne[0] first
    type_id: int = F32
    data: bytes = b""
    offset: int | None = None  # relative to the data section; None places it after the previous tensor


@dataclass
class Packer:
    """Collect keys and tensors, then ``pack()`` them into GGUF bytes."""

    version: int = 3
    byte_order: str = "<"
    alignment: int = 32  # used for padding only; add the key yourself to declare it
    pairs: list[bytes] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)

    # -- encoding --------------------------------------------------------------------------------------

    def num(self, fmt: str, value: object) -> bytes:
        return struct.pack(self.byte_order + fmt, value)

    def length(self, value: int) -> bytes:
        return self.num("I" if self.version == 1 else "Q", value)

    def string(self, text: str | bytes) -> bytes:
        raw = text.encode("utf-8") if isinstance(text, str) else text
        return self.length(len(raw)) + raw

    def value(self, value_type: int, value: object) -> bytes:
        """Encode a value without its type id: a scalar, a string, or ``(item_type, [items])`` for an array."""
        if value_type == STRING:
            return self.string(value)  # type: ignore[arg-type]
        if value_type == ARRAY:
            item_type, items = value  # type: ignore[misc]
            body = b"".join(self.value(item_type, item) for item in items)
            return self.num("I", item_type) + self.length(len(items)) + body
        return self.num(SCALAR_FORMATS[value_type], value)

    # -- building --------------------------------------------------------------------------------------

    def add(self, key: str | bytes, value_type: int, value: object) -> Packer:
        self.pairs.append(self.string(key) + self.num("I", value_type) + self.value(value_type, value))
        return self

    def add_raw(self, raw_pair: bytes) -> Packer:
        """Add a key-value pair given as bytes (for malformed pairs)."""
        self.pairs.append(raw_pair)
        return self

    def tensor(self, name: str | bytes, ggml_shape: tuple[int, ...], data: bytes, type_id: int = F32,
               offset: int | None = None) -> Packer:
        self.tensors.append(Tensor(name, ggml_shape, type_id, data, offset))
        return self

    def f32_tensor(self, name: str, values: list[float], ggml_shape: tuple[int, ...] | None = None) -> Packer:
        data = b"".join(self.num("f", v) for v in values)
        return self.tensor(name, ggml_shape or (len(values),), data)

    def pack(self, tensor_count: int | None = None, kv_count: int | None = None) -> bytes:
        """Return the file's bytes; the counts may be overridden to lie about the contents."""
        counts_format = "I" if self.version == 1 else "Q"
        header = b"GGUF" + self.num("I", self.version)
        header += self.num(counts_format, len(self.tensors) if tensor_count is None else tensor_count)
        header += self.num(counts_format, len(self.pairs) if kv_count is None else kv_count)
        out = bytearray(header + b"".join(self.pairs))

        offsets = []
        position = 0
        for tensor in self.tensors:
            if tensor.offset is None:
                position = (position + self.alignment - 1) // self.alignment * self.alignment
                offsets.append(position)
                position += len(tensor.data)
            else:
                offsets.append(tensor.offset)
        for tensor, offset in zip(self.tensors, offsets):
            out += self.string(tensor.name)
            out += self.num("I", len(tensor.ggml_shape))
            for dim in tensor.ggml_shape:
                out += self.length(dim)
            out += self.num("I", tensor.type_id)
            out += self.num("Q", offset)

        out += b"\0" * ((-len(out)) % self.alignment)
        data_start = len(out)
        for tensor, offset in zip(self.tensors, offsets):
            end = data_start + offset
            if len(out) < end:
                out += b"\0" * (end - len(out))
            out[end : end + len(tensor.data)] = tensor.data
        return bytes(out)


def small_model(packer: Packer | None = None, arch: str = "qwen35") -> Packer:
    """A tiny valid file: a few keys and three F32 tensors, enough for the reader and ``describe_mtp``."""
    packer = packer or Packer()
    packer.add("general.architecture", STRING, arch)
    packer.add("general.name", STRING, "tiny")
    packer.add(f"{arch}.block_count", UINT32, 2)
    packer.add(f"{arch}.nextn_predict_layers", UINT32, 1)
    packer.add("tokenizer.ggml.tokens", ARRAY, (STRING, ["a", "b", "c", "d"]))
    packer.add("tokenizer.ggml.scores", ARRAY, (FLOAT32, [0.0, -1.0, -2.0, -3.0]))
    packer.f32_tensor("token_embd.weight", [0.5] * 8, (2, 4))
    packer.f32_tensor("blk.0.attn_norm.weight", [1.0, 1.0])
    packer.f32_tensor("blk.1.nextn.eh_proj.weight", [0.25] * 8, (4, 2))
    return packer
