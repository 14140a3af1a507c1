"""Tests of the qwen35 forward pass and MTP head on small random weights held in memory.

These check structure (causality, layer-by-layer loading, tensor fallbacks, errors). Agreement with
transformers is tested in test_model_reference.py against the committed fixture.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from gguftools.errors import GGUFToolsError, ModelError
from gguftools.model import ops
from gguftools.model.hparams import Qwen35HParams
from gguftools.model.qwen35 import MTPHead, Qwen35Model, gated_attention

VOCAB = 50


def tiny_metadata():
    return {
        "general.architecture": "qwen35",
        "qwen35.block_count": 5,
        "qwen35.embedding_length": 32,
        "qwen35.feed_forward_length": 48,
        "qwen35.attention.head_count": 4,
        "qwen35.attention.head_count_kv": 2,
        "qwen35.attention.key_length": 8,
        "qwen35.attention.value_length": 8,
        "qwen35.attention.layer_norm_rms_epsilon": 1e-6,
        "qwen35.rope.freq_base": 10000.0,
        "qwen35.rope.dimension_count": 4,
        "qwen35.nextn_predict_layers": 1,
        "qwen35.ssm.conv_kernel": 4,
        "qwen35.ssm.state_size": 8,
        "qwen35.ssm.group_count": 2,
        "qwen35.ssm.time_step_rank": 4,
        "qwen35.ssm.inner_size": 32,
        "qwen35.attention.recurrent_layers": [True, False, True, False, False],
    }


def tiny_tensors(hp: Qwen35HParams, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors with the names and numpy shapes of a qwen35 GGUF file."""
    rng = np.random.default_rng(seed)
    d, ff = hp.embedding_length, hp.feed_forward_length

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(size):
        return (1.0 + 0.3 * rng.standard_normal(size)).astype(np.float32)

    tensors = {
        "token_embd.weight": rng.standard_normal((VOCAB, d)).astype(np.float32),
        "output_norm.weight": norm(d),
        "output.weight": matrix(VOCAB, d),
    }
    for block in range(hp.block_count):
        p = f"blk.{block}."
        tensors |= {
            p + "attn_norm.weight": norm(d),
            p + "post_attention_norm.weight": norm(d),
            p + "ffn_gate.weight": matrix(ff, d),
            p + "ffn_up.weight": matrix(ff, d),
            p + "ffn_down.weight": matrix(d, ff),
        }
        if hp.is_recurrent(block):
            n_v, d_v, d_k = hp.ssm_time_step_rank, hp.ssm_value_head_dim, hp.ssm_state_size
            channels = 2 * hp.ssm_group_count * d_k + n_v * d_v
            tensors |= {
                p + "attn_qkv.weight": matrix(channels, d),
                p + "attn_gate.weight": matrix(n_v * d_v, d),
                p + "ssm_conv1d.weight": (0.5 * rng.standard_normal((channels, hp.ssm_conv_kernel))).astype(np.float32),
                p + "ssm_dt.bias": rng.standard_normal(n_v).astype(np.float32),
                p + "ssm_a": (-rng.uniform(0.5, 4.0, n_v)).astype(np.float32),
                p + "ssm_alpha.weight": matrix(n_v, d),
                p + "ssm_beta.weight": matrix(n_v, d),
                p + "ssm_norm.weight": norm(d_v),
                p + "ssm_out.weight": matrix(d, n_v * d_v),
            }
        else:
            h, kv, hd = hp.head_count, hp.head_count_kv, hp.key_length
            tensors |= {
                p + "attn_q.weight": matrix(2 * h * hd, d),
                p + "attn_k.weight": matrix(kv * hd, d),
                p + "attn_v.weight": matrix(kv * hd, d),
                p + "attn_q_norm.weight": norm(hd),
                p + "attn_k_norm.weight": norm(hd),
                p + "attn_output.weight": matrix(d, h * hd),
            }
    for block in hp.mtp_blocks:
        p = f"blk.{block}.nextn."
        tensors |= {
            p + "eh_proj.weight": matrix(d, 2 * d),
            p + "enorm.weight": norm(d),
            p + "hnorm.weight": norm(d),
            p + "shared_head_norm.weight": norm(d),
        }
    return tensors


class DictWeights:
    """An in-memory weight source that returns a fresh copy per fetch and records every fetch."""

    def __init__(self, metadata, tensors):
        self.metadata = metadata
        self.tensors = tensors
        self.fetched: list[str] = []
        self.live: list[tuple[str, weakref.ref]] = []

    def has(self, name):
        return name in self.tensors

    def tensor(self, name):
        self.fetched.append(name)
        array = self.tensors[name].copy()
        self.live.append((name, weakref.ref(array)))
        return array

    def live_names(self):
        gc.collect()
        return {name for name, ref in self.live if ref() is not None}


@pytest.fixture
def model_parts():
    metadata = tiny_metadata()
    hp = Qwen35HParams.from_metadata(metadata)
    return metadata, hp, tiny_tensors(hp)


def make_model(metadata, tensors):
    return Qwen35Model(DictWeights(metadata, tensors))


TOKENS = np.array([3, 17, 4, 4, 49, 0, 22, 8, 31, 5, 12, 40, 7])


def test_forward_shapes_and_norm(model_parts):
    metadata, hp, tensors = model_parts
    out = make_model(metadata, tensors).forward(TOKENS)
    assert out.logits.shape == (len(TOKENS), VOCAB)
    assert out.hidden_pre_norm.shape == (len(TOKENS), hp.embedding_length)
    assert out.hidden_post_norm.shape == (len(TOKENS), hp.embedding_length)
    assert out.logits.dtype == np.float32
    expected_post = ops.rms_norm(out.hidden_pre_norm, tensors["output_norm.weight"], hp.rms_norm_eps)
    np.testing.assert_allclose(out.hidden_post_norm, expected_post, rtol=1e-6)
    np.testing.assert_allclose(out.logits, out.hidden_post_norm @ tensors["output.weight"].T, rtol=1e-5, atol=1e-5)


def test_forward_is_causal(model_parts):
    metadata, _, tensors = model_parts
    model = make_model(metadata, tensors)
    whole = model.forward(TOKENS)
    prefix = model.forward(TOKENS[:6])
    np.testing.assert_allclose(prefix.logits, whole.logits[:6], rtol=1e-4, atol=1e-5)
    changed = TOKENS.copy()
    changed[8] = 1
    after_change = model.forward(changed)
    np.testing.assert_allclose(after_change.logits[:8], whole.logits[:8], rtol=1e-4, atol=1e-5)
    assert not np.allclose(after_change.logits[8:], whole.logits[8:])


def test_forward_uses_each_layer_kind(model_parts):
    metadata, _, tensors = model_parts
    weights = DictWeights(metadata, tensors)
    Qwen35Model(weights).forward(TOKENS)
    assert "blk.0.ssm_a" in weights.fetched
    assert "blk.1.attn_q.weight" in weights.fetched
    assert "blk.3.attn_q.weight" in weights.fetched
    assert not any(name.startswith("blk.4.") for name in weights.fetched)  # the MTP block is not in the trunk


def test_forward_loads_one_block_at_a_time(model_parts):
    metadata, hp, tensors = model_parts

    class CheckingWeights(DictWeights):
        max_blocks_live = 0

        def tensor(self, name):
            live_blocks = {n.split(".")[1] for n in self.live_names() if n.startswith("blk.")}
            live_globals = {n for n in self.live_names() if not n.startswith("blk.")}
            if name.startswith("blk."):
                assert live_globals == set(), f"{sorted(live_globals)} still loaded while fetching {name}"
                live_blocks.add(name.split(".")[1])
            CheckingWeights.max_blocks_live = max(CheckingWeights.max_blocks_live, len(live_blocks))
            return super().tensor(name)

    Qwen35Model(CheckingWeights(metadata, tensors)).forward(TOKENS)
    assert CheckingWeights.max_blocks_live == 1


def test_tied_output_uses_token_embd(model_parts):
    metadata, hp, tensors = model_parts
    del tensors["output.weight"]
    out = make_model(metadata, tensors).forward(TOKENS)
    np.testing.assert_allclose(out.logits, out.hidden_post_norm @ tensors["token_embd.weight"].T, rtol=1e-5, atol=1e-5)


def test_fused_attention_qkv_matches_separate(model_parts):
    metadata, hp, tensors = model_parts
    expected = make_model(metadata, tensors).forward(TOKENS).logits
    for block in (1, 3):
        p = f"blk.{block}."
        parts = [tensors.pop(p + name) for name in ("attn_q.weight", "attn_k.weight", "attn_v.weight")]
        tensors[p + "attn_qkv.weight"] = np.concatenate(parts, axis=0)
    np.testing.assert_allclose(make_model(metadata, tensors).forward(TOKENS).logits, expected, rtol=1e-6)


def test_attention_bias_applied(model_parts):
    metadata, hp, tensors = model_parts
    without = make_model(metadata, tensors).forward(TOKENS).logits
    tensors["blk.1.attn_v.bias"] = np.full(hp.head_count_kv * hp.key_length, 0.5, dtype=np.float32)
    assert not np.allclose(make_model(metadata, tensors).forward(TOKENS).logits, without)


def test_attention_gate_halves_interleaved(model_parts):
    # Per head, attn_q rows [0, d_h) are the query and rows [d_h, 2 d_h) the gate. Zero gate rows give
    # sigmoid(0) = 0.5, so the output must be half the ungated attention computed from the query rows.
    _, hp, tensors = model_parts
    layer = {k.removeprefix("blk.1.").removesuffix(".weight"): v for k, v in tensors.items() if k.startswith("blk.1.")}
    x = np.random.default_rng(3).standard_normal((5, hp.embedding_length)).astype(np.float32)
    q_rows = layer["attn_q"].reshape(hp.head_count, 2, hp.key_length, -1)
    query_rows_only = np.concatenate([q_rows[:, :1], 0 * q_rows[:, 1:]], axis=1).reshape(layer["attn_q"].shape)
    zero_gate = dict(layer, attn_q=query_rows_only)
    no_out = dict(zero_gate, attn_output=np.eye(hp.embedding_length, hp.head_count * hp.key_length, dtype=np.float32))
    gated = gated_attention(x, no_out, hp, np.arange(5))
    query = (x @ layer["attn_q"].T).reshape(5, hp.head_count, 2, hp.key_length)[:, :, 0]
    query = ops.rotary_neox(ops.rms_norm(query, layer["attn_q_norm"], 1e-6), np.arange(5), 4, 10000.0)
    key = ops.rms_norm((x @ layer["attn_k"].T).reshape(5, 2, -1), layer["attn_k_norm"], 1e-6)
    key = ops.rotary_neox(key, np.arange(5), 4, 10000.0)
    value = (x @ layer["attn_v"].T).reshape(5, 2, -1)
    expected = 0.5 * ops.causal_attention(query, key, value, 1 / np.sqrt(hp.key_length)).reshape(5, -1)
    np.testing.assert_allclose(gated, expected, rtol=1e-5, atol=1e-6)


def test_missing_tensor_named(model_parts):
    metadata, _, tensors = model_parts
    del tensors["blk.2.ssm_a"]
    with pytest.raises(ModelError, match="tensor 'blk.2.ssm_a' not found"):
        make_model(metadata, tensors).forward(TOKENS)


def test_wrong_shape_named(model_parts):
    metadata, _, tensors = model_parts
    tensors["blk.0.ssm_conv1d.weight"] = tensors["blk.0.ssm_conv1d.weight"].T.copy()
    with pytest.raises(ModelError, match=r"'blk.0.ssm_conv1d.weight' has shape \[4, 64\], expected \[64, 4\]"):
        make_model(metadata, tensors).forward(TOKENS)


@pytest.mark.parametrize("tokens", [[], [[1, 2]], [1.5, 2.0]])
def test_invalid_token_input(model_parts, tokens):
    metadata, _, tensors = model_parts
    with pytest.raises(GGUFToolsError):
        make_model(metadata, tensors).forward(np.array(tokens))


@pytest.mark.parametrize("token", [-1, VOCAB])
def test_token_outside_vocabulary(model_parts, token):
    metadata, _, tensors = model_parts
    with pytest.raises(ModelError, match=f"token id {token} is outside the vocabulary"):
        make_model(metadata, tensors).forward(np.array([1, token]))


def manual_mtp_logits(tensors, hp, hidden, next_tokens):
    """The MTP head written out step by step, reusing the trunk's own block function."""
    from gguftools.model.qwen35 import block_tensors, decoder_block

    p = "blk.4.nextn."
    eps = hp.rms_norm_eps
    e = ops.rms_norm(tensors["token_embd.weight"][next_tokens], tensors[p + "enorm.weight"], eps)
    h = ops.rms_norm(hidden, tensors[p + "hnorm.weight"], eps)
    u = np.concatenate([e, h], axis=-1) @ tensors[p + "eh_proj.weight"].T
    layer = block_tensors(DictWeights({}, tensors), hp, 4, recurrent=False)
    y = decoder_block(u, layer, hp, np.arange(len(next_tokens)), recurrent=False)
    return ops.rms_norm(y, tensors[p + "shared_head_norm.weight"], eps) @ tensors["output.weight"].T


def test_mtp_head_matches_manual(model_parts):
    metadata, hp, tensors = model_parts
    model = make_model(metadata, tensors)
    trunk = model.forward(TOKENS)
    head = model.load_mtp_head()
    assert isinstance(head, MTPHead)
    assert head.block == 4
    logits = head.logits(trunk.hidden_post_norm[:-1], TOKENS[1:])
    assert logits.shape == (len(TOKENS) - 1, VOCAB)
    expected = manual_mtp_logits(tensors, hp, trunk.hidden_post_norm[:-1], TOKENS[1:])
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_mtp_concat_embedding_first(model_parts):
    # Zeroing the first half of eh_proj's columns must remove the embedding's influence.
    metadata, hp, tensors = model_parts
    d = hp.embedding_length
    tensors["blk.4.nextn.eh_proj.weight"][:, :d] = 0.0
    head = make_model(metadata, tensors).load_mtp_head()
    hidden = np.random.default_rng(5).standard_normal((4, d)).astype(np.float32)
    np.testing.assert_allclose(head.logits(hidden, [1, 2, 3, 4]), head.logits(hidden, [9, 8, 7, 6]), rtol=1e-6)


def test_mtp_head_loaded_once(model_parts):
    metadata, hp, tensors = model_parts
    weights = DictWeights(metadata, tensors)
    model = Qwen35Model(weights)
    trunk = model.forward(TOKENS)
    head = model.load_mtp_head()
    fetched = len(weights.fetched)
    post = head.logits(trunk.hidden_post_norm[:-1], TOKENS[1:])
    pre = head.logits(trunk.hidden_pre_norm[:-1], TOKENS[1:])
    assert len(weights.fetched) == fetched
    assert not np.allclose(pre, post)


def test_mtp_head_is_causal(model_parts):
    metadata, hp, tensors = model_parts
    head = make_model(metadata, tensors).load_mtp_head()
    hidden = np.random.default_rng(6).standard_normal((8, hp.embedding_length)).astype(np.float32)
    tokens = np.array([5, 6, 7, 8, 9, 10, 11, 12])
    prefix = head.logits(hidden[:5], tokens[:5])
    np.testing.assert_allclose(prefix, head.logits(hidden, tokens)[:5], rtol=1e-5, atol=1e-6)


def test_mtp_optional_tensors(model_parts):
    metadata, hp, tensors = model_parts
    d = hp.embedding_length
    rng = np.random.default_rng(7)
    hidden = rng.standard_normal((3, d)).astype(np.float32)
    tokens = [1, 2, 3]

    # Without shared_head_norm the head uses output_norm.
    tensors_no_norm = dict(tensors)
    del tensors_no_norm["blk.4.nextn.shared_head_norm.weight"]
    with_output_norm = dict(tensors, **{"blk.4.nextn.shared_head_norm.weight": tensors["output_norm.weight"]})
    np.testing.assert_allclose(
        make_model(metadata, tensors_no_norm).load_mtp_head().logits(hidden, tokens),
        make_model(metadata, with_output_norm).load_mtp_head().logits(hidden, tokens),
        rtol=1e-6,
    )

    # A block-local embedding and LM head take precedence over token_embd and output.
    local = dict(tensors)
    local["blk.4.nextn.embed_tokens.weight"] = rng.standard_normal((VOCAB, d)).astype(np.float32)
    local["blk.4.nextn.shared_head_head.weight"] = rng.standard_normal((VOCAB, d)).astype(np.float32)
    swapped = dict(
        tensors,
        **{
            "token_embd.weight": local["blk.4.nextn.embed_tokens.weight"],
            "output.weight": local["blk.4.nextn.shared_head_head.weight"],
        },
    )
    np.testing.assert_allclose(
        make_model(metadata, local).load_mtp_head().logits(hidden, tokens),
        make_model(metadata, swapped).load_mtp_head().logits(hidden, tokens),
        rtol=1e-6,
    )


def test_mtp_tied_head_fetches_embedding_once(model_parts):
    metadata, hp, tensors = model_parts
    del tensors["output.weight"]
    weights = DictWeights(metadata, tensors)
    Qwen35Model(weights).load_mtp_head()
    assert weights.fetched.count("token_embd.weight") == 1


def test_mtp_missing_eh_proj_named(model_parts):
    metadata, _, tensors = model_parts
    del tensors["blk.4.nextn.eh_proj.weight"]
    with pytest.raises(ModelError, match="'blk.4.nextn.eh_proj.weight' not found"):
        make_model(metadata, tensors).load_mtp_head()


def test_mtp_block_index_checked(model_parts):
    metadata, _, tensors = model_parts
    with pytest.raises(ModelError, match="block 2 is not an MTP block"):
        make_model(metadata, tensors).load_mtp_head(2)


def test_mtp_absent_when_no_nextn(model_parts):
    metadata, _, tensors = model_parts
    metadata = dict(metadata, **{"qwen35.nextn_predict_layers": 0})
    with pytest.raises(ModelError, match="nextn_predict_layers is 0"):
        make_model(metadata, tensors).load_mtp_head()


def test_mtp_hidden_shape_checked(model_parts):
    metadata, hp, tensors = model_parts
    head = make_model(metadata, tensors).load_mtp_head()
    with pytest.raises(GGUFToolsError, match="hidden states have shape"):
        head.logits(np.zeros((3, hp.embedding_length), np.float32), [1, 2])
