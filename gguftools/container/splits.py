"""Split GGUF sets (``name-00001-of-00003.gguf``) opened as one model.

llama.cpp's ``gguf-split`` writes the full metadata into the first shard and ``split.no``, ``split.count``
and ``split.tensors.count`` into every shard; each shard holds a share of the tensors. Any shard's path opens
the whole set.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from gguftools.container.reader import GGUFFile, MetadataField, TensorInfo
from gguftools.container.types import Problem
from gguftools.errors import GGUFFormatError

SHARD_NAME = re.compile(r"^(?P<prefix>.*)-(?P<number>\d{5})-of-(?P<count>\d{5})\.gguf$")


def shard_paths(path: str) -> list[str] | None:
    """Return the paths of every shard of the set that ``path`` belongs to, or None for a single file."""
    folder, name = os.path.split(path)
    match = SHARD_NAME.match(name)
    if match is None:
        return None
    count = int(match["count"])
    if count < 2:
        return None
    return [
        os.path.join(folder, f"{match['prefix']}-{number:05d}-of-{count:05d}.gguf") for number in range(1, count + 1)
    ]


class GGUFModel:
    """A model stored as one GGUF file or as a split set, read through one interface.

    ``metadata`` comes from the first shard (the only one that holds the model's keys); ``tensors`` merges
    every shard's tensors, and each ``TensorInfo`` knows its own file.
    """

    def __init__(self, files: list[GGUFFile], problems: list[Problem]) -> None:
        self.files = files
        self.path = files[0].path
        self.metadata: dict[str, MetadataField] = files[0].metadata
        self.tensors: dict[str, TensorInfo] = {}
        self.problems: list[Problem] = list(problems)
        for gguf_file in files:
            for problem in gguf_file.problems:
                if gguf_file is not files[0]:
                    problem = Problem(problem.rule, f"{os.path.basename(gguf_file.path)}: {problem}")
                self.problems.append(problem)
            for name, info in gguf_file.tensors.items():
                if name in self.tensors:
                    first = os.path.basename(self.tensors[name].file.path)
                    self.problems.append(
                        Problem(
                            "split-duplicate-tensor",
                            f"tensor {name!r} is in both {first} and {os.path.basename(gguf_file.path)}",
                        )
                    )
                    continue
                self.tensors[name] = info

    @property
    def is_split(self) -> bool:
        return len(self.files) > 1

    @property
    def architecture(self) -> str | None:
        return self.files[0].architecture

    @property
    def tensor_infos_complete(self) -> bool:
        """False when a shard is cut short inside its tensor infos, so ``tensors`` lacks the ones after the cut."""
        return all(gguf_file.tensor_infos_complete for gguf_file in self.files)

    @property
    def version(self) -> int:
        return self.files[0].version

    @property
    def file_size(self) -> int:
        return sum(gguf_file.file_size for gguf_file in self.files)

    def get(self, key: str, default: Any = None) -> Any:
        return self.files[0].get(key, default)

    def tensor_bytes(self, name: str) -> np.ndarray:
        return self._info(name).file.tensor_bytes(name)

    def dequantize(self, name: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        return self._info(name).file.dequantize(name, rows)

    def _info(self, name: str) -> TensorInfo:
        info = self.tensors.get(name)
        if info is None:
            raise GGUFFormatError(f"tensor {name!r} not found", self.path)
        return info

    def close(self) -> None:
        for gguf_file in self.files:
            gguf_file.close()

    def __enter__(self) -> GGUFModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_gguf(path: str | os.PathLike[str]) -> GGUFModel:
    """Open a GGUF file, or the whole split set when ``path`` names one of its shards.

    A missing shard, a shard whose ``split.count`` or ``split.no`` contradicts its file name, and a tensor
    stored in two shards are recorded in ``problems``; the set still opens as long as one shard exists.
    """
    path = os.fspath(path)
    paths = shard_paths(path)
    if paths is None:
        model = GGUFModel([GGUFFile(path)], [])
        _check_unsplit(model)
        return model

    problems: list[Problem] = []
    files: list[GGUFFile] = []
    try:
        for number, shard in enumerate(paths, start=1):
            if not os.path.exists(shard):
                problems.append(
                    Problem("split-missing-shard", f"shard {number} of {len(paths)} is missing: {shard}")
                )
                continue
            files.append(GGUFFile(shard))
    except Exception:
        for gguf_file in files:
            gguf_file.close()
        raise
    if not files:
        raise GGUFFormatError("no shard of this split set exists", path)

    for gguf_file in files:
        problems.extend(_shard_problems(gguf_file, paths))
    if files[0].path != paths[0]:
        problems.append(
            Problem(
                "split-missing-shard",
                "the first shard is missing, so the model's metadata is not available",
            )
        )
    return GGUFModel(files, problems)


def _shard_problems(gguf_file: GGUFFile, paths: list[str]) -> list[Problem]:
    """Compare a shard's ``split.count`` and ``split.no`` keys with its file name."""
    problems = []
    name = os.path.basename(gguf_file.path)
    declared = gguf_file.get("split.count")
    if declared is not None and declared != len(paths):
        problems.append(
            Problem(
                "split-count-mismatch",
                f"{name}: split.count is {declared!r}, but the file name says {len(paths)} shards",
            )
        )
    number = gguf_file.get("split.no")
    expected_number = paths.index(gguf_file.path)  # split.no counts from 0
    if number is not None and number != expected_number:
        problems.append(
            Problem(
                "split-number-mismatch",
                f"{name}: split.no is {number!r}, but the file name makes it shard {expected_number + 1} "
                f"(split.no {expected_number})",
            )
        )
    return problems


def _check_unsplit(model: GGUFModel) -> None:
    """Record a file that declares itself one shard of several but is not named like a shard."""
    declared = model.get("split.count")
    if isinstance(declared, int) and not isinstance(declared, bool) and declared > 1:
        model.problems.append(
            Problem(
                "split-unnamed-shard",
                f"split.count is {declared}, but the file name does not end in -0000N-of-{declared:05d}.gguf, "
                f"so the other shards cannot be found",
            )
        )
