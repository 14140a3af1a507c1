"""Split sets (name-0000N-of-0000M.gguf), packed by hand the way llama.cpp's gguf-split lays them out."""

from __future__ import annotations

import pytest

from gguf_bytes import STRING, UINT16, INT32, UINT32, Packer
from gguftools.container import open_gguf
from gguftools.errors import GGUFFormatError
from gguftools.mtp import Layout, describe_mtp
from gguftools.validate import validate_file


def shard(number: int, count: int, tensors: list[str], declared_count: int | None = None,
          declared_number: int | None = None) -> bytes:
    """One shard: split.no (0-based), split.count and split.tensors.count; model keys only in the first."""
    packer = Packer()
    if number == 1:
        packer.add("general.architecture", STRING, "qwen35")
        packer.add("qwen35.block_count", UINT32, 2)
        packer.add("qwen35.nextn_predict_layers", UINT32, 1)
    packer.add("split.no", UINT16, number - 1 if declared_number is None else declared_number)
    packer.add("split.count", UINT16, count if declared_count is None else declared_count)
    packer.add("split.tensors.count", INT32, 4)
    for name in tensors:
        packer.f32_tensor(name, [1.0, 1.0])
    return packer.pack()


SHARD_TENSORS = [
    ["token_embd.weight", "blk.0.attn_norm.weight"],
    ["blk.1.attn_norm.weight"],
    ["blk.1.nextn.eh_proj.weight"],
]


def write_set(tmp_path, skip: tuple[int, ...] = (), overrides: dict[int, dict] | None = None) -> list[str]:
    overrides = overrides or {}
    paths = []
    for number, tensors in enumerate(SHARD_TENSORS, start=1):
        path = tmp_path / f"model-{number:05d}-of-00003.gguf"
        paths.append(str(path))
        if number not in skip:
            path.write_bytes(shard(number, 3, tensors, **overrides.get(number, {})))
    return paths


@pytest.mark.parametrize("which", [0, 1, 2])
def test_any_shard_opens_the_set(tmp_path, which):
    paths = write_set(tmp_path)
    with open_gguf(paths[which]) as model:
        assert model.is_split
        assert [f.path for f in model.files] == paths
        assert model.architecture == "qwen35"
        assert sorted(model.tensors) == sorted(name for names in SHARD_TENSORS for name in names)
        assert model.tensors["blk.1.nextn.eh_proj.weight"].file.path == paths[2]
        assert model.dequantize("blk.1.nextn.eh_proj.weight").tolist() == [1.0, 1.0]
        assert model.problems == []
        assert describe_mtp(model).block_indices == [1]


def test_missing_shard_is_reported(tmp_path):
    paths = write_set(tmp_path, skip=(2,))
    with open_gguf(paths[0]) as model:
        assert [p.rule for p in model.problems] == ["split-missing-shard"]
        assert "shard 2 of 3" in model.problems[0]
        assert "blk.1.attn_norm.weight" not in model.tensors


def test_missing_first_shard_is_reported(tmp_path):
    paths = write_set(tmp_path, skip=(1,))
    with open_gguf(paths[2]) as model:
        rules = [p.rule for p in model.problems]
        assert rules.count("split-missing-shard") == 2
        assert any("metadata is not available" in p for p in model.problems)
        assert describe_mtp(model).layout in (Layout.MTP_ONLY, Layout.TRUNK_ONLY, Layout.PARTIAL)


def test_no_shard_exists(tmp_path):
    with pytest.raises(GGUFFormatError, match="no shard"):
        open_gguf(tmp_path / "model-00001-of-00003.gguf")


def test_count_mismatch_is_reported(tmp_path):
    paths = write_set(tmp_path, overrides={2: {"declared_count": 4}})
    with open_gguf(paths[0]) as model:
        assert [p.rule for p in model.problems] == ["split-count-mismatch"]
        assert "split.count is 4" in model.problems[0]


def test_number_mismatch_is_reported(tmp_path):
    paths = write_set(tmp_path, overrides={3: {"declared_number": 0}})
    with open_gguf(paths[0]) as model:
        assert [p.rule for p in model.problems] == ["split-number-mismatch"]


def test_duplicate_tensor_across_shards(tmp_path):
    paths = write_set(tmp_path)
    (tmp_path / "model-00002-of-00003.gguf").write_bytes(
        shard(2, 3, ["blk.1.attn_norm.weight", "token_embd.weight"])
    )
    with open_gguf(paths[1]) as model:
        assert [p.rule for p in model.problems] == ["split-duplicate-tensor"]
        assert "'token_embd.weight'" in model.problems[0]
        assert model.tensors["token_embd.weight"].file.path == paths[0]


def test_renamed_shard_is_reported(tmp_path):
    path = tmp_path / "renamed.gguf"
    path.write_bytes(shard(1, 3, SHARD_TENSORS[0]))
    with open_gguf(path) as model:
        assert [p.rule for p in model.problems] == ["split-unnamed-shard"]


def test_validate_reports_split_problems(tmp_path):
    paths = write_set(tmp_path, skip=(3,))
    report = validate_file(paths[0])
    rules = [finding.rule for finding in report.findings]
    assert "split-missing-shard" in rules
    assert "nextn-stale-key" in rules  # the MTP block lived in the missing shard
