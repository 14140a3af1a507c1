"""GGUF value types and tensor types.

The value type ids follow the GGUF specification (ggml/docs/gguf.md in llama.cpp). Tensor types reuse
``gguf.GGMLQuantizationType`` and ``gguf.GGML_QUANT_SIZES`` from gguf-py, so that names and block sizes are
the ones the rest of the ecosystem prints.
"""

from __future__ import annotations

import enum

import gguf
import numpy as np

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
SUPPORTED_VERSIONS = (2, 3)


class ValueType(enum.IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# struct format character and numpy dtype of each fixed-size value type (byte order added by the reader)
SCALAR_FORMATS: dict[ValueType, str] = {
    ValueType.UINT8: "B",
    ValueType.INT8: "b",
    ValueType.UINT16: "H",
    ValueType.INT16: "h",
    ValueType.UINT32: "I",
    ValueType.INT32: "i",
    ValueType.FLOAT32: "f",
    ValueType.BOOL: "?",
    ValueType.UINT64: "Q",
    ValueType.INT64: "q",
    ValueType.FLOAT64: "d",
}

SCALAR_DTYPES: dict[ValueType, np.dtype] = {
    value_type: np.dtype(fmt) for value_type, fmt in SCALAR_FORMATS.items()
}


def value_type_name(type_id: int) -> str:
    """Return the GGUF name of a value type id, or ``unknown(N)`` for an id outside the specification."""
    try:
        return ValueType(type_id).name
    except ValueError:
        return f"unknown({type_id})"


def tensor_type_name(type_id: int) -> str:
    """Return the ggml name of a tensor type id (``Q8_0``), or ``unknown(N)``."""
    try:
        return gguf.GGMLQuantizationType(type_id).name
    except ValueError:
        return f"unknown({type_id})"


def tensor_nbytes(type_id: int, ggml_shape: tuple[int, ...]) -> int | None:
    """Return the byte size of a tensor, or None when the type id is unknown or the row is not whole blocks.

    ``ggml_shape`` is in ggml order: the first dimension is the contiguous one, and quantized types pack
    it in blocks of ``block_size`` elements stored in ``type_size`` bytes.
    """
    try:
        qtype = gguf.GGMLQuantizationType(type_id)
    except ValueError:
        return None
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    elements = 1
    for dim in ggml_shape:
        elements *= dim
    if ggml_shape and ggml_shape[0] % block_size != 0:
        return None
    return elements // block_size * type_size


class Problem(str):
    """A problem found while reading a file: the message users see, plus the id of the rule it breaks.

    It is a ``str`` so that code that only prints or searches problem messages keeps working; ``validate``
    reads ``rule`` to attach a level and to let users filter findings.
    """

    rule: str

    def __new__(cls, rule: str, message: str) -> Problem:
        problem = super().__new__(cls, message)
        problem.rule = rule
        return problem

    def __reduce__(self) -> tuple[type[Problem], tuple[str, str]]:
        return (Problem, (self.rule, str(self)))
