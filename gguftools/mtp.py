"""Which blocks of a GGUF model are MTP (nextn) blocks, which tensors they hold, and the file's layout.

Conventions (llama.cpp ``src/llama-arch.cpp`` and ``src/models/qwen35.cpp``): ``{arch}.block_count`` counts
trunk and MTP blocks together, and the last ``{arch}.nextn_predict_layers`` blocks are MTP blocks, whose
head tensors are named ``blk.{i}.nextn.*``. The layout is read from the tensors themselves, because the key
may be stale or missing.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any

from gguftools.container import GGUFModel, ValueType

NEXTN_PREDICT_LAYERS = "{arch}.nextn_predict_layers"
NEXTN_HIDDEN_SOURCE = "{arch}.nextn_hidden_source"
BLOCK_COUNT = "{arch}.block_count"
HIDDEN_SOURCES = ("post_norm", "pre_norm")

# llama.cpp's qwen35 loader requires these three and falls back to token_embd, output_norm and output
# for the rest.
REQUIRED_NEXTN_TENSORS = ("eh_proj", "enorm", "hnorm")
OPTIONAL_NEXTN_TENSORS = ("shared_head_norm", "embed_tokens", "shared_head_head")

# Published models have 1 to 3 MTP blocks; the bound only keeps a corrupt key from exhausting memory.
MAX_NEXTN_PREDICT_LAYERS = 1024

# Block numbers of at most 9 digits: a damaged name with thousands of digits would make int() fail.
NEXTN_TENSOR = re.compile(r"^blk\.([0-9]{1,9})\.nextn\.([A-Za-z0-9_]+)\.weight$")
BLOCK_TENSOR = re.compile(r"^blk\.([0-9]{1,9})\.")


class Layout(str, enum.Enum):
    COMPLETE = "complete"
    TRUNK_ONLY = "trunk-only"
    STALE_KEY = "stale-key"
    MTP_ONLY = "mtp-only"
    PARTIAL = "partial"
    # The file is cut short inside its tensor infos, so the tensors after the cut are unknown.
    UNKNOWN = "unknown"


@dataclasses.dataclass
class MTPBlock:
    """One MTP block: its index and which head tensors it holds."""

    index: int
    found: list[str]  # nextn tensor short names present, e.g. "eh_proj"
    missing_required: list[str]
    missing_optional: list[str]
    layer_tensors: int  # ordinary block tensors (attn_*, ffn_*, ...) in the same block


@dataclasses.dataclass
class MTPInfo:
    """The MTP facts of one model file, as ``inspect`` and ``validate`` report them."""

    architecture: str | None
    block_count: int | None
    nextn_predict_layers: int | None
    expected_blocks: list[int]  # the last nextn_predict_layers blocks, from the keys
    blocks: list[MTPBlock]  # blocks that hold nextn tensors, from the tensors
    layout: Layout
    hidden_source: Any  # str, bytes for invalid UTF-8, or any other value when the key has the wrong type
    hidden_source_key: str | None
    problems: list[str]

    @property
    def block_indices(self) -> list[int]:
        return [block.index for block in self.blocks]


def _int_key(model: GGUFModel, key: str, problems: list[str]) -> int | None:
    value = model.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{key} is {value!r}, expected an unsigned integer")
        return None
    return value


def describe_mtp(model: GGUFModel) -> MTPInfo:
    """Find the MTP blocks of ``model`` from its tensor names and compare them with its keys."""
    problems: list[str] = []
    arch = model.architecture
    block_count = nextn_layers = None
    hidden_source = hidden_source_key = None
    if arch is not None:
        block_count = _int_key(model, BLOCK_COUNT.format(arch=arch), problems)
        nextn_layers = _int_key(model, NEXTN_PREDICT_LAYERS.format(arch=arch), problems)
        hidden_source_key = NEXTN_HIDDEN_SOURCE.format(arch=arch)
        hidden_source = model.get(hidden_source_key)
        field = model.metadata.get(hidden_source_key)
        if field is not None and field.value_type != ValueType.STRING:
            problems.append(f"{hidden_source_key} has type {field.type_label()}, expected STRING")
        elif hidden_source is not None and hidden_source not in HIDDEN_SOURCES:
            problems.append(
                f"{hidden_source_key} is {hidden_source!r}, expected one of {', '.join(HIDDEN_SOURCES)}"
            )

    expected_blocks: list[int] = []
    if block_count is not None and nextn_layers:
        if nextn_layers > block_count:
            problems.append(f"nextn_predict_layers ({nextn_layers}) is larger than block_count ({block_count})")
        elif nextn_layers > MAX_NEXTN_PREDICT_LAYERS:
            # A damaged key: listing its blocks one by one would take memory in proportion to the number.
            problems.append(
                f"nextn_predict_layers ({nextn_layers}) is implausibly large "
                f"(more than {MAX_NEXTN_PREDICT_LAYERS}); the MTP blocks are taken from the tensors alone"
            )
        else:
            expected_blocks = list(range(block_count - nextn_layers, block_count))

    nextn_by_block: dict[int, list[str]] = {}
    layer_tensors: dict[int, int] = {}
    for name in model.tensors:
        match = NEXTN_TENSOR.match(name)
        if match:
            nextn_by_block.setdefault(int(match[1]), []).append(match[2])
            continue
        block = BLOCK_TENSOR.match(name)
        if block:
            layer_tensors[int(block[1])] = layer_tensors.get(int(block[1]), 0) + 1

    blocks = []
    for index in sorted(nextn_by_block):
        found = nextn_by_block[index]
        blocks.append(
            MTPBlock(
                index=index,
                found=found,
                missing_required=[t for t in REQUIRED_NEXTN_TENSORS if t not in found],
                missing_optional=[t for t in OPTIONAL_NEXTN_TENSORS if t not in found],
                layer_tensors=layer_tensors.get(index, 0),
            )
        )

    # In a file cut short inside its tensor infos, a tensor missing from the list may lie after the cut, so
    # only the tensors that are present count as evidence.
    infos_complete = model.tensor_infos_complete
    for block in blocks:
        if block.missing_required and infos_complete:
            problems.append(f"MTP block {block.index} lacks nextn.{', nextn.'.join(block.missing_required)}")
        if block.layer_tensors == 0 and infos_complete:
            problems.append(f"MTP block {block.index} has no decoder layer tensors (blk.{block.index}.attn_*, ffn_*)")
        if expected_blocks and block.index not in expected_blocks:
            problems.append(
                f"block {block.index} holds nextn tensors but the keys put the MTP blocks at "
                f"{_ranges(expected_blocks)}"
            )
    found_indices = {block.index for block in blocks}
    for index in expected_blocks:
        if blocks and index not in found_indices and infos_complete:
            problems.append(f"MTP block {index} is announced by the keys but holds no nextn tensors")
    if blocks and not nextn_layers and arch is not None:
        problems.append(
            f"{NEXTN_PREDICT_LAYERS.format(arch=arch)} is {'missing' if nextn_layers is None else 0} "
            f"but {len(blocks)} block(s) hold nextn tensors"
        )

    layout = _layout(model, blocks, nextn_layers, expected_blocks)
    if layout is Layout.UNKNOWN:
        problems.append("the tensor infos are truncated, so the MTP layout cannot be determined")
    if layout is Layout.STALE_KEY:
        problems.append(
            f"nextn_predict_layers is {nextn_layers} but no blk.N.nextn.* tensors exist "
            f"(the key is stale, e.g. from an older converter or a merge)"
        )
    return MTPInfo(
        architecture=arch,
        block_count=block_count,
        nextn_predict_layers=nextn_layers,
        expected_blocks=expected_blocks,
        blocks=blocks,
        layout=layout,
        hidden_source=hidden_source,
        hidden_source_key=hidden_source_key,
        problems=problems,
    )


def _layout(model: GGUFModel, blocks: list[MTPBlock], nextn_layers: int | None, expected: list[int]) -> Layout:
    if not model.tensor_infos_complete:
        return Layout.UNKNOWN
    if not blocks:
        return Layout.STALE_KEY if nextn_layers else Layout.TRUNK_ONLY
    if "blk.0.attn_norm.weight" not in model.tensors:
        return Layout.MTP_ONLY
    incomplete = any(block.missing_required or block.layer_tensors == 0 for block in blocks)
    if incomplete or any(index not in {block.index for block in blocks} for index in expected):
        return Layout.PARTIAL
    return Layout.COMPLETE


def _ranges(indices: list[int]) -> str:
    if len(indices) == 1:
        return f"block {indices[0]}"
    return f"blocks {indices[0]}-{indices[-1]}"
