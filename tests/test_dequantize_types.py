"""Every tensor type: dequantized exactly as gguf-py does it, or rejected with an error naming the type."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from gguftools.container import open_gguf
from gguftools.errors import UnsupportedError

ROWS, COLUMNS = 2, 256  # 256 is a whole number of blocks for every block size ggml uses


def write_raw(path, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    row_bytes = COLUMNS // block_size * type_size
    raw = np.random.default_rng(int(qtype)).integers(0, 256, size=(ROWS, row_bytes), dtype=np.uint8)
    if qtype in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16, gguf.GGMLQuantizationType.F32):
        raw = np.random.default_rng(0).standard_normal((ROWS, COLUMNS)).astype(np.float32)
        raw = gguf.quants.quantize(raw, qtype).view(np.uint8).reshape(ROWS, row_bytes)
    writer = gguf.GGUFWriter(str(path), "test")
    writer.add_tensor("t.weight", raw, raw_shape=raw.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return raw


# Random bytes decode to NaN and infinite scales in some types; both sides compute the same NaNs.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("qtype", list(gguf.GGMLQuantizationType), ids=lambda qtype: qtype.name)
def test_dequantize_type(tmp_path, qtype):
    if qtype in (gguf.GGMLQuantizationType.I8, gguf.GGMLQuantizationType.I16, gguf.GGMLQuantizationType.I32,
                 gguf.GGMLQuantizationType.I64, gguf.GGMLQuantizationType.F64):
        pytest.skip("integer and F64 tensors hold no model weights")
    raw = write_raw(tmp_path / "t.gguf", qtype)
    try:
        expected = np.asarray(gguf.quants.dequantize(raw, qtype), dtype=np.float32).reshape(ROWS, COLUMNS)
    except NotImplementedError:
        expected = None

    with open_gguf(tmp_path / "t.gguf") as model:
        assert model.tensors["t.weight"].type_name == qtype.name
        if expected is None:
            with pytest.raises(UnsupportedError, match=qtype.name):
                model.dequantize("t.weight")
            return
        values = model.dequantize("t.weight")
        assert values.shape == (ROWS, COLUMNS)
        np.testing.assert_array_equal(values, expected)
        np.testing.assert_array_equal(model.dequantize("t.weight", rows=(1, 2)), expected[1:2])
