"""MTP layout detection on model-shaped files."""

from __future__ import annotations

import pytest
from ggufbuild import write_gguf

from gguftools.container import open_gguf
from gguftools.mtp import Layout, describe_mtp


def describe(path):
    with open_gguf(path) as model:
        return describe_mtp(model)


def test_complete_layout(tmp_path):
    info = describe(write_gguf(tmp_path / "m.gguf"))
    assert info.layout is Layout.COMPLETE
    assert info.block_indices == [2]
    assert info.expected_blocks == [2]
    assert info.problems == []


def test_trunk_only_layout(tmp_path):
    info = describe(write_gguf(tmp_path / "m.gguf", nextn_blocks=0))
    assert info.layout is Layout.TRUNK_ONLY
    assert info.blocks == []


def test_stale_key_layout(tmp_path):
    info = describe(write_gguf(tmp_path / "m.gguf", with_nextn_tensors=False))
    assert info.layout is Layout.STALE_KEY
    assert any("stale" in problem for problem in info.problems)


def test_mtp_only_layout(tmp_path):
    info = describe(write_gguf(tmp_path / "m.gguf", with_trunk=False))
    assert info.layout is Layout.MTP_ONLY


def test_partial_layout_names_missing_tensor(tmp_path):
    info = describe(write_gguf(tmp_path / "m.gguf", skip=("blk.2.nextn.hnorm.weight",)))
    assert info.layout is Layout.PARTIAL
    assert info.blocks[0].missing_required == ["hnorm"]
    assert any("nextn.hnorm" in problem for problem in info.problems)


def test_key_missing_but_tensors_present(tmp_path):
    info = describe(write_gguf(tmp_path / "m.gguf", nextn_key=0))
    assert info.layout is Layout.COMPLETE
    assert any("0 but 1 block(s) hold nextn tensors" in problem for problem in info.problems)


@pytest.mark.parametrize("value", ["post_norm", "pre_norm", "sideways"])
def test_hidden_source_key_read(tmp_path, value):
    info = describe(write_gguf(tmp_path / "m.gguf", extra_keys={"qwen35.nextn_hidden_source": value}))
    assert info.hidden_source == value
    assert info.hidden_source_key == "qwen35.nextn_hidden_source"
    assert any("sideways" in problem for problem in info.problems) == (value == "sideways")
