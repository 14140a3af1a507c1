"""The GGUF container: value and tensor types, a lazy reader, split sets and a byte-preserving writer."""

from gguftools.container.reader import ArrayValue, GGUFFile, MetadataField, TensorInfo
from gguftools.container.splits import GGUFModel, open_gguf
from gguftools.container.types import ValueType

__all__ = ["ArrayValue", "GGUFFile", "GGUFModel", "MetadataField", "TensorInfo", "ValueType", "open_gguf"]
