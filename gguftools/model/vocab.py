"""Vocabulary-sized matrices (token embedding, output head) read a slice of rows at a time.

A real model's ``token_embd`` or ``output`` is [vocab, d] with a vocabulary of about 250k: 5 GB as float32
for d = 5120. Scoring needs only some of its rows (the embeddings of the tokens in the text) and only the
top token of each product row, so neither ever has to be dequantized whole.
"""

from __future__ import annotations

import os

import numpy as np

from gguftools.errors import ModelError

# Rows dequantized at once: a slice is CHUNK_BYTES of float32 whatever the embedding width.
CHUNK_BYTES = 256 * 1024 * 1024


class VocabMatrix:
    """A [vocab, d] tensor of a weight source, dequantized in slices of rows.

    ``matrix[token_ids]`` gathers rows as ``np.ndarray`` indexing would, so it can stand in for the array in
    an embedding lookup. Weight sources without a ``rows`` method (in-memory test weights) are read whole.
    """

    def __init__(self, weights: object, name: str, width: int, path: str | os.PathLike[str] | None = None) -> None:
        if not weights.has(name):
            raise ModelError(f"tensor {name!r} not found", path)
        self.weights = weights
        self.name = name
        self.path = path
        shape = tuple(weights.shape(name)) if hasattr(weights, "shape") else weights.tensor(name).shape
        if len(shape) != 2 or shape[1] != width:
            raise ModelError(f"tensor {name!r} has shape {list(shape)}, expected [any, {width}]", path)
        self.shape = shape
        self.chunk_rows = max(1, CHUNK_BYTES // (4 * width))
        self._cached_ids = np.empty(0, dtype=np.int64)
        self._cached_rows = np.empty((0, width), dtype=np.float32)

    def prefetch(self, token_ids: np.ndarray) -> None:
        """Gather the rows of ``token_ids`` in one pass and keep them, so later lookups of them read nothing."""
        unique = np.unique(np.asarray(token_ids, dtype=np.int64))
        self._cached_rows = self._gather(unique)
        self._cached_ids = unique

    def slices(self):
        """Yield (start, rows) for consecutive row slices covering the whole matrix."""
        for start in range(0, self.shape[0], self.chunk_rows):
            stop = min(self.shape[0], start + self.chunk_rows)
            if hasattr(self.weights, "rows"):
                yield start, self.weights.rows(self.name, start, stop)
            else:
                yield start, np.asarray(self.weights.tensor(self.name)[start:stop], dtype=np.float32)

    def __getitem__(self, token_ids: np.ndarray) -> np.ndarray:
        token_ids = np.asarray(token_ids, dtype=np.int64)
        if len(self._cached_ids) and np.isin(token_ids, self._cached_ids).all():
            return self._cached_rows[np.searchsorted(self._cached_ids, token_ids)]
        return self._gather(token_ids)

    def _gather(self, token_ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(token_ids), self.shape[1]), dtype=np.float32)
        for start, rows in self.slices():
            selected = (token_ids >= start) & (token_ids < start + len(rows))
            if selected.any():
                out[selected] = rows[token_ids[selected] - start]
        return out

    def top_tokens(self, x: np.ndarray) -> np.ndarray:
        """Return ``argmax(x @ matrix.T, axis=-1)`` for ``x`` [T, d] without the [T, vocab] product."""
        best_score = np.full(len(x), -np.inf, dtype=np.float32)
        best_token = np.zeros(len(x), dtype=np.int64)
        for start, rows in self.slices():
            # Rows of x in blocks too, so that the score matrix stays near CHUNK_BYTES however long x is.
            block = max(1, CHUNK_BYTES // (4 * len(rows)))
            for first in range(0, len(x), block):
                scores = x[first : first + block] @ rows.T  # [block, d] x [d, rows] -> [block, rows]
                local = scores.argmax(axis=-1)
                local_best = scores[np.arange(len(scores)), local]
                better = local_best > best_score[first : first + block]  # strict: ties keep the lower id
                best_score[first : first + block][better] = local_best[better]
                best_token[first : first + block][better] = local[better] + start
        return best_token
