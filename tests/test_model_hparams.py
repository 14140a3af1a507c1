"""Tests of Qwen35HParams.from_metadata: key names, defaults, layer kinds and errors."""

from __future__ import annotations

import numpy as np
import pytest

from gguftools.errors import ModelError, UnsupportedError
from gguftools.model.hparams import Qwen35HParams


def qwen35_metadata(**overrides):
    """Metadata as llama.cpp's converter writes it for a 6-block trunk plus one MTP block."""
    metadata = {
        "general.architecture": "qwen35",
        "qwen35.block_count": 7,
        "qwen35.context_length": 4096,
        "qwen35.embedding_length": 64,
        "qwen35.feed_forward_length": 128,
        "qwen35.attention.head_count": 4,
        "qwen35.attention.head_count_kv": 2,
        "qwen35.rope.dimension_sections": np.array([2, 1, 1, 0], dtype=np.int32),
        "qwen35.rope.freq_base": 10000.0,
        "qwen35.attention.layer_norm_rms_epsilon": 1e-6,
        "qwen35.attention.key_length": 32,
        "qwen35.attention.value_length": 32,
        "qwen35.nextn_predict_layers": 1,
        "qwen35.ssm.conv_kernel": 4,
        "qwen35.ssm.state_size": 16,
        "qwen35.ssm.group_count": 2,
        "qwen35.ssm.time_step_rank": 4,
        "qwen35.ssm.inner_size": 64,
        "qwen35.attention.recurrent_layers": np.array([True, True, False, True, True, False, False]),
        "qwen35.full_attention_interval": 4,
        "qwen35.rope.dimension_count": 8,
    }
    metadata.update(overrides)
    return {key: value for key, value in metadata.items() if value is not None}


def test_reads_converter_keys():
    hp = Qwen35HParams.from_metadata(qwen35_metadata())
    assert hp.arch == "qwen35"
    assert hp.block_count == 7
    assert hp.nextn_predict_layers == 1
    assert hp.trunk_block_count == 6
    assert list(hp.mtp_blocks) == [6]
    assert hp.embedding_length == 64
    assert hp.feed_forward_length == 128
    assert (hp.head_count, hp.head_count_kv) == (4, 2)
    assert (hp.key_length, hp.value_length) == (32, 32)
    assert hp.rms_norm_eps == pytest.approx(1e-6)
    assert hp.rope_freq_base == 10000.0
    assert hp.rope_dimension_count == 8
    assert hp.rope_dimension_sections == (2, 1, 1, 0)
    assert (hp.ssm_conv_kernel, hp.ssm_state_size) == (4, 16)
    assert (hp.ssm_group_count, hp.ssm_time_step_rank, hp.ssm_inner_size) == (2, 4, 64)
    assert hp.ssm_value_head_dim == 16
    assert hp.context_length == 4096


def test_recurrent_layers_preferred_over_interval():
    # The converter wrote interval 4 next to the real pattern (full attention every 3rd block).
    hp = Qwen35HParams.from_metadata(qwen35_metadata())
    assert hp.recurrent_layers == (True, True, False, True, True, False, False)
    assert [hp.is_recurrent(i) for i in range(7)] == list(hp.recurrent_layers)


def test_recurrent_layers_as_list():
    flags = [True, False, True, False, True, False, False]
    hp = Qwen35HParams.from_metadata(qwen35_metadata(**{"qwen35.attention.recurrent_layers": flags}))
    assert hp.recurrent_layers == tuple(flags)


def test_interval_when_no_recurrent_layers():
    hp = Qwen35HParams.from_metadata(
        qwen35_metadata(**{"qwen35.attention.recurrent_layers": None, "qwen35.full_attention_interval": 3})
    )
    assert hp.recurrent_layers == (True, True, False, True, True, False, False)


def test_default_interval_is_four():
    hp = Qwen35HParams.from_metadata(
        qwen35_metadata(
            **{
                "qwen35.attention.recurrent_layers": None,
                "qwen35.full_attention_interval": None,
                "qwen35.block_count": 9,
            }
        )
    )
    assert hp.recurrent_layers == (True, True, True, False, True, True, True, False, False)


def test_optional_keys_default():
    hp = Qwen35HParams.from_metadata(
        qwen35_metadata(
            **{
                "qwen35.nextn_predict_layers": None,
                "qwen35.attention.recurrent_layers": None,
                "qwen35.attention.key_length": None,
                "qwen35.attention.value_length": None,
                "qwen35.rope.dimension_count": None,
                "qwen35.rope.dimension_sections": None,
                "qwen35.context_length": None,
                "qwen35.block_count": 6,
            }
        )
    )
    assert hp.nextn_predict_layers == 0
    assert hp.key_length == 16  # embedding_length / head_count
    assert hp.rope_dimension_count == 16
    assert hp.rope_dimension_sections == ()
    assert hp.context_length is None


def test_numpy_scalars_accepted():
    hp = Qwen35HParams.from_metadata(
        qwen35_metadata(**{"qwen35.block_count": np.uint32(7), "qwen35.rope.freq_base": np.float32(1e6)})
    )
    assert hp.block_count == 7
    assert hp.rope_freq_base == 1e6


def test_arch_argument_overrides_general_architecture():
    metadata = qwen35_metadata(**{"general.architecture": None})
    assert Qwen35HParams.from_metadata(metadata, "qwen35").arch == "qwen35"


def test_unsupported_architecture_named():
    with pytest.raises(UnsupportedError, match="'deepseek2'"):
        Qwen35HParams.from_metadata(qwen35_metadata(**{"general.architecture": "deepseek2"}))


def test_missing_architecture_key():
    with pytest.raises(ModelError, match="general.architecture"):
        Qwen35HParams.from_metadata(qwen35_metadata(**{"general.architecture": None}))


@pytest.mark.parametrize(
    "key",
    [
        "qwen35.block_count",
        "qwen35.embedding_length",
        "qwen35.feed_forward_length",
        "qwen35.attention.head_count",
        "qwen35.attention.layer_norm_rms_epsilon",
        "qwen35.ssm.conv_kernel",
        "qwen35.ssm.state_size",
        "qwen35.ssm.group_count",
        "qwen35.ssm.time_step_rank",
        "qwen35.ssm.inner_size",
    ],
)
def test_missing_required_key_named(key):
    with pytest.raises(ModelError, match=f"'{key}' not found"):
        Qwen35HParams.from_metadata(qwen35_metadata(**{key: None}))


def test_path_in_message():
    with pytest.raises(ModelError, match=r"^model\.gguf: key 'qwen35.block_count' not found$"):
        Qwen35HParams.from_metadata(qwen35_metadata(**{"qwen35.block_count": None}), path="model.gguf")


@pytest.mark.parametrize(
    "key,value",
    [
        ("qwen35.block_count", "7"),
        ("qwen35.block_count", 7.0),
        ("qwen35.block_count", True),
        ("qwen35.attention.head_count", 0),
        ("qwen35.attention.layer_norm_rms_epsilon", "1e-6"),
        ("qwen35.attention.layer_norm_rms_epsilon", float("nan")),
        ("qwen35.rope.dimension_sections", "2,1,1"),
        ("qwen35.attention.recurrent_layers", [1, 0, 1, 0, 1, 0, 0]),
        ("qwen35.attention.recurrent_layers", True),
    ],
)
def test_mistyped_key_rejected(key, value):
    with pytest.raises(ModelError, match=key):
        Qwen35HParams.from_metadata(qwen35_metadata(**{key: value}))


def test_recurrent_layers_length_checked():
    with pytest.raises(ModelError, match="6 entries, expected one per block \\(7\\)"):
        Qwen35HParams.from_metadata(qwen35_metadata(**{"qwen35.attention.recurrent_layers": [True] * 6}))


def test_recurrent_mtp_block_rejected():
    with pytest.raises(ModelError, match="MTP block"):
        Qwen35HParams.from_metadata(qwen35_metadata(**{"qwen35.attention.recurrent_layers": [True] * 7}))


def test_nextn_leaving_no_trunk_rejected():
    with pytest.raises(ModelError, match="no trunk blocks"):
        Qwen35HParams.from_metadata(qwen35_metadata(**{"qwen35.nextn_predict_layers": 7}))


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        ({"qwen35.attention.head_count_kv": 3}, "not a multiple"),
        ({"qwen35.attention.value_length": 16}, "differs from"),
        ({"qwen35.rope.dimension_count": 7}, "must be even"),
        ({"qwen35.rope.dimension_count": 64}, "must be even and at most"),
        ({"qwen35.ssm.time_step_rank": 3}, "value heads"),
        ({"qwen35.ssm.inner_size": 96}, "inner_size"),
    ],
)
def test_inconsistent_values_rejected(overrides, fragment):
    with pytest.raises(ModelError, match=fragment):
        Qwen35HParams.from_metadata(qwen35_metadata(**overrides))
