"""The reader on malformed and unusual files, each packed by hand (see gguf_bytes.py for the layout)."""

from __future__ import annotations

import os
import struct
import threading

import pytest
from click.testing import CliRunner

from gguf_bytes import (
    ARRAY,
    FLOAT32,
    INT32,
    STRING,
    UINT8,
    UINT32,
    UINT64,
    Packer,
    small_model,
)
from gguftools.cli import cli
from gguftools.container import open_gguf
from gguftools.container.reader import MAX_ARRAY_DEPTH, GGUFFile
from gguftools.errors import GGUFFormatError, GGUFToolsError, UnsupportedError
from gguftools.mtp import describe_mtp
from gguftools.render import inspect_json, inspect_text, printable


def write(tmp_path, data: bytes, name: str = "model.gguf") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def rules(model) -> list[str]:
    return [problem.rule for problem in model.problems]


# -- byte order and versions --------------------------------------------------------------------------


def test_big_endian_file_reads_values(tmp_path):
    path = write(tmp_path, small_model(Packer(byte_order=">")).pack())
    with open_gguf(path) as model:
        assert model.files[0].byte_order == ">"
        assert model.get("qwen35.block_count") == 2
        assert model.get("tokenizer.ggml.tokens").to_list() == ["a", "b", "c", "d"]
        assert model.get("tokenizer.ggml.scores").to_list() == [0.0, -1.0, -2.0, -3.0]
        assert model.dequantize("blk.1.nextn.eh_proj.weight").tolist() == [[0.25] * 4] * 2
        assert model.problems == []


def test_big_endian_matches_little_endian(tmp_path):
    little = write(tmp_path, small_model().pack(), "little.gguf")
    big = write(tmp_path, small_model(Packer(byte_order=">")).pack(), "big.gguf")
    with open_gguf(little) as a, open_gguf(big) as b:
        assert list(a.metadata) == list(b.metadata)
        assert [(t.name, t.shape) for t in a.tensors.values()] == [(t.name, t.shape) for t in b.tensors.values()]
        assert (a.dequantize("token_embd.weight") == b.dequantize("token_embd.weight")).all()


def test_version_1_is_read(tmp_path):
    # version 1: u32 counts, u32 string lengths and u32 dimensions
    path = write(tmp_path, small_model(Packer(version=1)).pack())
    with open_gguf(path) as model:
        assert model.version == 1
        assert model.get("general.name") == "tiny"
        assert model.get("tokenizer.ggml.tokens").to_list() == ["a", "b", "c", "d"]
        assert model.tensors["token_embd.weight"].shape == (4, 2)
        assert "gguf-version-1" in rules(model)


@pytest.mark.parametrize("version", [0, 4, 99, 0x7FFF])
def test_unknown_version_is_rejected(tmp_path, version):
    path = write(tmp_path, small_model(Packer(version=version)).pack())
    with pytest.raises(UnsupportedError) as caught:
        open_gguf(path)
    assert f"version {version}" in str(caught.value)
    assert path in str(caught.value)


def test_bad_magic_is_rejected(tmp_path):
    path = write(tmp_path, b"GGML" + bytes(60))
    with pytest.raises(GGUFFormatError, match="magic"):
        open_gguf(path)


# -- alignment ----------------------------------------------------------------------------------------


def test_alignment_64_is_used(tmp_path):
    packer = small_model(Packer(alignment=64))
    packer.pairs.insert(0, Packer().string("general.alignment") + struct.pack("<II", UINT32, 64))
    path = write(tmp_path, packer.pack())
    with open_gguf(path) as model:
        assert model.files[0].alignment == 64
        assert model.files[0].data_offset % 64 == 0
        assert model.problems == []
        assert model.dequantize("blk.0.attn_norm.weight").tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("value_type", "value", "expected"),
    [(UINT32, 0, "power of two"), (UINT32, 48, "power of two"), (UINT64, 32, "type UINT64"),
     (STRING, "32", "type STRING")],
)
def test_bad_alignment_is_reported(tmp_path, value_type, value, expected):
    packer = small_model()
    packer.add("general.alignment", value_type, value)
    path = write(tmp_path, packer.pack())
    with open_gguf(path) as model:
        assert model.files[0].alignment == 32
        assert "gguf-alignment" in rules(model)
        assert any(expected in problem for problem in model.problems)


# -- keys and tensor types ----------------------------------------------------------------------------


def test_duplicate_keys_are_both_kept(tmp_path):
    packer = small_model()
    packer.add("general.name", STRING, "second")
    path = write(tmp_path, packer.pack())
    with open_gguf(path) as model:
        assert model.get("general.name") == "tiny"
        names = [field.value for field in model.metadata.values() if field.key == "general.name"]
        assert names == ["tiny", "second"]
        assert rules(model) == ["gguf-duplicate-key"]
        assert "general.name" in model.problems[0]
        text = inspect_text(model, describe_mtp(model), False, False)
        assert "'tiny'" in text and "'second'" in text


def test_unknown_tensor_type_keeps_metadata(tmp_path):
    packer = small_model()
    packer.tensor("blk.0.odd.weight", (4,), b"\0" * 16, type_id=250)
    path = write(tmp_path, packer.pack())
    with open_gguf(path) as model:
        assert model.get("general.name") == "tiny"
        assert model.tensors["blk.0.odd.weight"].type_name == "unknown(250)"
        assert rules(model) == ["gguf-unknown-tensor-type"]
        assert "blk.0.odd.weight" in model.problems[0]
        with pytest.raises(UnsupportedError, match="blk.0.odd.weight"):
            model.dequantize("blk.0.odd.weight")
        assert model.dequantize("token_embd.weight").shape == (4, 2)


def test_empty_key_is_reported(tmp_path):
    packer = small_model()
    packer.add("", UINT32, 7)
    path = write(tmp_path, packer.pack())
    with open_gguf(path) as model:
        assert model.get("") == 7
        assert rules(model) == ["gguf-empty-key"]


def test_zero_size_dimension(tmp_path):
    packer = small_model()
    packer.tensor("blk.0.empty.weight", (0, 4), b"")
    path = write(tmp_path, packer.pack())
    with open_gguf(path) as model:
        tensor = model.tensors["blk.0.empty.weight"]
        assert tensor.nbytes == 0
        assert model.dequantize("blk.0.empty.weight").shape == (4, 0)
        assert model.problems == []


# -- arrays -------------------------------------------------------------------------------------------


def nested_array(packer: Packer, depth: int) -> bytes:
    """An array of arrays ``depth`` levels deep, the innermost holding one INT32."""
    body = packer.num("I", INT32) + packer.length(1) + packer.num("i", 5)
    for _ in range(depth - 1):
        body = packer.num("I", ARRAY) + packer.length(1) + body
    return body


def test_nested_arrays_within_limit_read(tmp_path):
    packer = small_model()
    packer.add_raw(packer.string("deep") + packer.num("I", ARRAY) + nested_array(packer, MAX_ARRAY_DEPTH))
    path = write(tmp_path, packer.pack())
    with open_gguf(path) as model:
        value = model.get("deep")
        for _ in range(MAX_ARRAY_DEPTH - 1):
            value = value[0]
        assert value.to_list() == [5]
        assert inspect_json(model, describe_mtp(model), False, False)["metadata"]["deep"]["count"] == 1


def test_nested_arrays_beyond_limit_rejected(tmp_path):
    packer = small_model()
    packer.add_raw(packer.string("deep") + packer.num("I", ARRAY) + nested_array(packer, MAX_ARRAY_DEPTH + 1))
    path = write(tmp_path, packer.pack())
    with pytest.raises(GGUFFormatError, match="nested deeper"):
        open_gguf(path)


def test_unknown_array_element_type_rejected(tmp_path):
    packer = small_model()
    packer.add_raw(packer.string("odd") + packer.num("I", ARRAY) + packer.num("I", 77) + packer.length(1) + b"x")
    path = write(tmp_path, packer.pack())
    with pytest.raises(GGUFFormatError, match="unknown array element type 77") as caught:
        open_gguf(path)
    assert path in str(caught.value)


def test_unknown_value_type_rejected(tmp_path):
    packer = small_model()
    packer.add_raw(packer.string("odd") + packer.num("I", 13) + b"\0" * 8)
    path = write(tmp_path, packer.pack())
    with pytest.raises(GGUFFormatError, match="unknown value type 13"):
        open_gguf(path)


@pytest.mark.parametrize("item_type", [UINT8, FLOAT32, STRING, ARRAY])
def test_array_count_larger_than_file(tmp_path, item_type):
    packer = small_model()
    packer.add_raw(packer.string("huge") + packer.num("I", ARRAY) + packer.num("I", item_type) + packer.length(2**62))
    path = write(tmp_path, packer.pack())
    with pytest.raises(GGUFFormatError, match="truncated"):
        open_gguf(path)


def test_string_length_larger_than_file(tmp_path):
    packer = small_model()
    packer.add_raw(packer.string("long") + packer.num("I", STRING) + packer.length(2**63))
    path = write(tmp_path, packer.pack())
    with pytest.raises(GGUFFormatError, match="truncated"):
        open_gguf(path)


@pytest.mark.parametrize(("tensor_count", "kv_count"), [(2**63, None), (None, 2**63), (2**64 - 1, 2**64 - 1)])
def test_counts_larger_than_file(tmp_path, tensor_count, kv_count):
    path = write(tmp_path, small_model().pack(tensor_count=tensor_count, kv_count=kv_count))
    try:
        with open_gguf(path) as model:
            # tensor infos are cut: the metadata is kept and the cut reported
            assert model.get("general.name") == "tiny"
            assert "gguf-truncated" in rules(model)
    except GGUFFormatError as error:
        assert "truncated" in str(error)


# -- truncation ---------------------------------------------------------------------------------------


def test_truncation_at_every_offset(tmp_path):
    data = small_model().pack()
    with open_gguf(write(tmp_path, data, "full.gguf")) as full:
        first = full.files[0]
        metadata_end, data_offset = first.metadata_end, first.data_offset
    path = tmp_path / "cut.gguf"
    for size in range(len(data)):
        path.write_bytes(data[:size])
        if size < metadata_end:
            with pytest.raises(GGUFFormatError) as caught:
                open_gguf(path)
            assert str(path) in str(caught.value)
            continue
        with open_gguf(path) as model:
            assert model.get("general.name") == "tiny", size
            assert "gguf-truncated" in rules(model), size
            if size < data_offset and not model.files[0].tensor_infos_complete:
                assert any("tensor info" in problem for problem in model.problems)
            describe_mtp(model)
            inspect_text(model, describe_mtp(model), True, True)


def test_truncated_data_names_first_tensor(tmp_path):
    data = small_model().pack()
    path = write(tmp_path, data[:-20])
    with open_gguf(path) as model:
        truncated = [problem for problem in model.problems if problem.rule == "gguf-truncated"]
        assert len(truncated) == 1
        assert "'blk.1.nextn.eh_proj.weight'" in truncated[0]
        assert model.dequantize("token_embd.weight").shape == (4, 2)
        with pytest.raises(GGUFFormatError, match="past the end"):
            model.dequantize("blk.1.nextn.eh_proj.weight")


def test_truncated_tensor_infos_keep_metadata(tmp_path):
    data = small_model().pack()
    with open_gguf(write(tmp_path, data, "full.gguf")) as full:
        cut = full.files[0].metadata_end + 30  # inside the first tensor info
    path = write(tmp_path, data[:cut])
    result = CliRunner().invoke(cli, ["inspect", path])
    assert result.exit_code == 0, result.output
    assert "general.name: STRING 'tiny'" in result.output
    assert "truncated in tensor info 1 of 3" in result.output


def test_inspect_on_unreadable_file_exits_2(tmp_path):
    path = write(tmp_path, b"GGUF\x03\0\0\0" + b"\x01")
    result = CliRunner().invoke(cli, ["inspect", path])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {path}: truncated")
    assert "Traceback" not in result.output


# -- text that must not reach the terminal raw --------------------------------------------------------


def test_invalid_utf8_and_control_characters_escaped(tmp_path):
    packer = small_model()
    packer.add(b"bad\xffkey\x1b[31m", STRING, b"value\xfe\x07")
    packer.tensor(b"blk.0.\x1b]0;title\x07.weight", (2,), b"\0" * 8)
    path = write(tmp_path, packer.pack())
    with open_gguf(path) as model:
        assert "gguf-invalid-utf8" in rules(model)
        raw_keys = [field.raw_key for field in model.metadata.values()]
        assert b"bad\xffkey\x1b[31m" in raw_keys
    result = CliRunner().invoke(cli, ["inspect", "--tensors", path])
    assert result.exit_code == 0
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "bad\\xffkey\\x1b[31m" in result.output
    result = CliRunner().invoke(cli, ["inspect", "--json", "--tensors", path])
    assert result.exit_code == 0
    result.output.encode("utf-8")  # strict UTF-8: no lone surrogates
    assert "bad\\\\xffkey" in result.output


def test_printable_escapes_surrogates_and_controls():
    assert printable("a\udcffb\x1b") == "a\\xffb\\x1b"
    assert printable(b"\xfe\x07") == "\\xfe\\x07"
    assert printable("caf\u00e9\u009b") == "caf\u00e9\\x9b"


def test_edit_preserves_odd_bytes(tmp_path):
    from gguftools.container.types import ValueType
    from gguftools.container.writer import NewValue
    from gguftools.edit import set_metadata

    packer = small_model()
    packer.add(b"bad\xffkey\x1b[31m", STRING, b"value\xfe\x07")
    path = write(tmp_path, packer.pack())
    before = GGUFFile(path)
    spans = {field.raw_key: bytes(before._map[field.start : field.end]) for field in before.metadata.values()}
    before.close()

    set_metadata(path, {"qwen35.nextn_hidden_source": NewValue(ValueType.STRING, "post_norm")})

    after = GGUFFile(path)
    try:
        for field in after.metadata.values():
            if field.raw_key in spans:
                assert bytes(after._map[field.start : field.end]) == spans[field.raw_key]
        assert after.get("qwen35.nextn_hidden_source") == "post_norm"
    finally:
        after.close()


# -- things that are not files ------------------------------------------------------------------------


def test_folder_is_rejected(tmp_path):
    with pytest.raises(GGUFFormatError, match="folder"):
        open_gguf(tmp_path)


def test_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            open_gguf(fifo)
            outcome.append(None)
        except GGUFToolsError as error:
            outcome.append(error)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert outcome, "open_gguf blocked on a FIFO"
    assert isinstance(outcome[0], GGUFFormatError)


def test_empty_file_is_rejected(tmp_path):
    with pytest.raises(GGUFFormatError, match="too short"):
        open_gguf(write(tmp_path, b""))


def test_string_array_element_longer_than_file(tmp_path):
    packer = small_model()
    element = packer.length(2**63 - 1) + b"x"
    packer.add_raw(packer.string("words") + packer.num("I", ARRAY) + packer.num("I", STRING) + packer.length(2) + element)
    path = write(tmp_path, packer.pack())
    with pytest.raises(GGUFFormatError, match="truncated"):
        open_gguf(path)
