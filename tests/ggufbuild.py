"""Small GGUF files for tests, written with gguf-py's own writer (an independent implementation)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

NEXTN_NAMES = ("eh_proj", "enorm", "hnorm", "shared_head_norm")


def write_gguf(
    path: Path,
    arch: str = "qwen35",
    trunk_blocks: int = 2,
    nextn_blocks: int = 1,
    nextn_key: int | None = None,
    with_nextn_tensors: bool = True,
    with_trunk: bool = True,
    skip: tuple[str, ...] = (),
    extra_keys: dict[str, str] | None = None,
    embed: int = 32,
    vocab: int = 16,
) -> Path:
    """Write a model-shaped GGUF with random weights: trunk blocks, then MTP blocks at the end."""
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), arch)
    block_count = trunk_blocks + nextn_blocks
    writer.add_block_count(block_count)
    writer.add_uint32(f"{arch}.nextn_predict_layers", nextn_blocks if nextn_key is None else nextn_key)
    writer.add_embedding_length(embed)
    writer.add_token_list([f"t{i}" for i in range(vocab)])
    for key, value in (extra_keys or {}).items():
        writer.add_string(key, value)

    def tensor(name: str, shape: tuple[int, ...]) -> None:
        if name not in skip:
            writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))

    tensor("token_embd.weight", (vocab, embed))
    tensor("output_norm.weight", (embed,))
    first = 0 if with_trunk else trunk_blocks
    for block in range(first, block_count):
        tensor(f"blk.{block}.attn_norm.weight", (embed,))
        tensor(f"blk.{block}.ffn_up.weight", (embed, embed))
        if block >= trunk_blocks and with_nextn_tensors:
            tensor(f"blk.{block}.nextn.eh_proj.weight", (embed, 2 * embed))
            for name in NEXTN_NAMES[1:]:
                tensor(f"blk.{block}.nextn.{name}.weight", (embed,))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
