"""Model weights read from a GGUF file on demand, for a forward pass that loads one layer at a time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gguftools.container import ArrayValue, GGUFModel
from gguftools.errors import ModelError


class MetadataView(Mapping[str, Any]):
    """The model's metadata as plain Python values: arrays become numpy arrays or lists of str."""

    def __init__(self, model: GGUFModel) -> None:
        self._model = model

    def __getitem__(self, key: str) -> Any:
        field = self._model.metadata[key]
        value = field.value
        if isinstance(value, ArrayValue):
            if value.item_type in (0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12):
                return value.to_numpy()
            return value.to_list()
        return value

    def __iter__(self):
        return iter(self._model.metadata)

    def __len__(self) -> int:
        return len(self._model.metadata)


class GGUFWeights:
    """Dequantizes tensors by name when asked; nothing is cached, so dropped layers free their memory."""

    def __init__(self, model: GGUFModel) -> None:
        self.model = model
        self.metadata = MetadataView(model)

    def has(self, name: str) -> bool:
        return name in self.model.tensors

    def tensor(self, name: str) -> np.ndarray:
        """Return tensor ``name`` as float32 in numpy order ([out_features, in_features] for a matrix)."""
        if name not in self.model.tensors:
            raise ModelError(f"tensor {name!r} not found", self.model.path)
        return self.model.dequantize(name)

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Return rows ``start:stop`` of tensor ``name`` as float32, dequantizing only those rows."""
        if name not in self.model.tensors:
            raise ModelError(f"tensor {name!r} not found", self.model.path)
        return self.model.dequantize(name, (start, stop))

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.model.tensors:
            raise ModelError(f"tensor {name!r} not found", self.model.path)
        return self.model.tensors[name].shape
