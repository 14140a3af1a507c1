"""The reader against gguf-py's GGUFReader as an oracle, on files written by gguf-py's GGUFWriter."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from gguftools.container import ArrayValue, ValueType, open_gguf
from gguftools.container.writer import NewValue
from gguftools.edit import set_metadata


@pytest.fixture()
def mixed_file(tmp_path):
    path = tmp_path / "mixed.gguf"
    rng = np.random.default_rng(1)
    writer = gguf.GGUFWriter(str(path), "qwen35")
    writer.add_uint8("test.u8", 200)
    writer.add_int8("test.i8", -5)
    writer.add_uint16("test.u16", 65000)
    writer.add_int16("test.i16", -30000)
    writer.add_uint32("test.u32", 4_000_000_000)
    writer.add_int32("test.i32", -2_000_000_000)
    writer.add_float32("test.f32", 1.5)
    writer.add_bool("test.bool", True)
    writer.add_uint64("test.u64", 2**63)
    writer.add_int64("test.i64", -(2**62))
    writer.add_float64("test.f64", 0.1)
    writer.add_string("test.str", "héllo\tworld")
    writer.add_array("test.floats", [0.5, 1.5, 2.5])
    writer.add_array("test.strings", ["a", "bc", ""])
    writer.add_array("test.nested", [[1, 2], [3]])
    writer.add_token_list([f"token{i}" for i in range(5000)])
    writer.add_tensor("f32.weight", rng.standard_normal((3, 64)).astype(np.float32))
    writer.add_tensor("f16.weight", rng.standard_normal((2, 64)).astype(np.float16))
    for qtype in (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.BF16):
        values = rng.standard_normal((4, 256)).astype(np.float32)
        packed = gguf.quants.quantize(values, qtype)
        writer.add_tensor(f"{qtype.name.lower()}.weight", packed, raw_shape=packed.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_scalar_values_match_gguf_py(mixed_file):
    oracle = gguf.GGUFReader(str(mixed_file))
    with open_gguf(mixed_file) as model:
        for key in ("test.u8", "test.i8", "test.u16", "test.i16", "test.u32", "test.i32", "test.bool", "test.u64", "test.i64"):
            assert model.get(key) == oracle.fields[key].contents(), key
        assert model.get("test.f32") == pytest.approx(1.5)
        assert model.get("test.f64") == 0.1
        assert model.get("test.str") == "héllo\tworld"
        assert model.metadata["test.u64"].value_type == ValueType.UINT64


def test_arrays_are_lazy_views(mixed_file):
    with open_gguf(mixed_file) as model:
        tokens = model.get("tokenizer.ggml.tokens")
        assert isinstance(tokens, ArrayValue)
        assert len(tokens) == 5000
        assert tokens[4999] == "token4999"
        assert tokens[-1] == "token4999"
        assert model.get("test.strings").to_list() == ["a", "bc", ""]
        assert model.get("test.floats").to_numpy().tolist() == [0.5, 1.5, 2.5]
        nested = model.get("test.nested")
        assert [inner.to_list() for inner in nested] == [[1, 2], [3]]


def test_tensor_infos_match_gguf_py(mixed_file):
    oracle = gguf.GGUFReader(str(mixed_file))
    with open_gguf(mixed_file) as model:
        assert list(model.tensors) == [tensor.name for tensor in oracle.tensors]
        for expected in oracle.tensors:
            info = model.tensors[expected.name]
            assert info.ggml_shape == tuple(int(dim) for dim in expected.shape)
            assert info.type_id == expected.tensor_type
            assert info.absolute_offset == expected.data_offset
            assert info.nbytes == expected.n_bytes


@pytest.mark.parametrize("name", ["f32.weight", "f16.weight", "q8_0.weight", "q4_0.weight", "bf16.weight"])
def test_dequantize_matches_gguf_py(mixed_file, name):
    oracle = {tensor.name: tensor for tensor in gguf.GGUFReader(str(mixed_file)).tensors}[name]
    expected = gguf.quants.dequantize(oracle.data, oracle.tensor_type).reshape(tuple(reversed(oracle.shape.tolist())))
    with open_gguf(mixed_file) as model:
        values = model.dequantize(name)
        assert values.dtype == np.float32
        assert values.shape == expected.shape
        np.testing.assert_array_equal(values, expected)


def test_unsupported_dequantize_names_type(tmp_path, monkeypatch, mixed_file):
    def refuse(data, qtype):
        raise NotImplementedError(qtype)

    monkeypatch.setattr(gguf.quants, "dequantize", refuse)
    with open_gguf(mixed_file) as model:
        with pytest.raises(Exception) as raised:
            model.dequantize("q8_0.weight")
        assert "Q8_0" in str(raised.value)
        assert "q8_0.weight" in str(raised.value)


def test_edit_keeps_every_other_byte(mixed_file, tmp_path):
    out = tmp_path / "edited.gguf"
    with open_gguf(mixed_file) as before:
        old_fields = {key: bytes(before.files[0]._map[f.start : f.end]) for key, f in before.metadata.items()}
        old_data = bytes(before.files[0]._map[before.files[0].data_offset :])
    set_metadata(str(mixed_file), {"qwen35.nextn_hidden_source": NewValue(ValueType.STRING, "post_norm")}, output=str(out))
    with open_gguf(out) as after:
        new_file = after.files[0]
        assert list(after.metadata)[:-1] == list(old_fields)
        assert list(after.metadata)[-1] == "qwen35.nextn_hidden_source"
        for key, raw in old_fields.items():
            field = after.metadata[key]
            assert bytes(new_file._map[field.start : field.end]) == raw, key
        assert bytes(new_file._map[new_file.data_offset :]) == old_data
        assert after.get("qwen35.nextn_hidden_source") == "post_norm"
    oracle = gguf.GGUFReader(str(out))
    assert oracle.fields["qwen35.nextn_hidden_source"].contents() == "post_norm"
