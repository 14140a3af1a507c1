"""Tests of gguftools.model.ops against naive loops and hand-computed values (no torch needed)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gguftools.model import ops

RNG_SEED = 1234


def random(shape, scale=1.0, seed=RNG_SEED):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def test_linear_matches_loop():
    x, w, b = random((3, 4)), random((5, 4), seed=1), random((5,), seed=2)
    y = ops.linear(x, w, b)
    for t in range(3):
        for o in range(5):
            assert y[t, o] == pytest.approx(sum(x[t, i] * w[o, i] for i in range(4)) + b[o], abs=1e-5)


def test_sigmoid_softplus_silu_values():
    x = np.array([-3.0, -0.5, 0.0, 0.5, 3.0], dtype=np.float32)
    expected_sigmoid = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(ops.sigmoid(x), expected_sigmoid, atol=1e-6)
    np.testing.assert_allclose(ops.softplus(x), np.log1p(np.exp(x.astype(np.float64))), atol=1e-6)
    np.testing.assert_allclose(ops.silu(x), x * expected_sigmoid, atol=1e-6)


def test_sigmoid_softplus_extremes_finite():
    x = np.array([-1000.0, -100.0, 100.0, 1000.0], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ops.sigmoid(x)
        p = ops.softplus(x)
    np.testing.assert_allclose(s, [0.0, 0.0, 1.0, 1.0], atol=1e-30)
    np.testing.assert_allclose(p, [0.0, 0.0, 100.0, 1000.0], atol=1e-6)


def test_rms_norm_matches_loop():
    x, w = random((4, 6)), random((6,), seed=3)
    eps = 1e-6
    y = ops.rms_norm(x, w, eps)
    for t in range(4):
        rms = math.sqrt(sum(float(v) ** 2 for v in x[t]) / 6 + eps)
        for i in range(6):
            assert y[t, i] == pytest.approx(x[t, i] / rms * w[i], rel=1e-5)


def test_rms_norm_per_head_axis():
    x, w = random((2, 3, 8)), random((8,), seed=4)
    y = ops.rms_norm(x, w, 1e-6)
    np.testing.assert_allclose(y[1, 2], ops.rms_norm(x[1, 2][None], w, 1e-6)[0], rtol=1e-6)


def test_l2_normalize_unit_length():
    x = random((5, 3, 16))
    y = ops.l2_normalize(x, 1e-6)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 1.0, atol=1e-5)


def test_l2_normalize_epsilon_in_sum():
    # eps is added to the sum of squares, not to the mean: [3, 4] -> [3, 4] / sqrt(25 + 11) = [0.5, 0.666...].
    y = ops.l2_normalize(np.array([3.0, 4.0], dtype=np.float32), 11.0)
    np.testing.assert_allclose(y, [0.5, 4.0 / 6.0], rtol=1e-6)


def test_gated_rms_norm_matches_parts():
    x, w, g = random((3, 2, 8)), random((8,), seed=5), random((3, 2, 8), seed=6)
    expected = ops.rms_norm(x, w, 1e-6) * g / (1.0 + np.exp(-g))
    np.testing.assert_allclose(ops.gated_rms_norm(x, w, g, 1e-6), expected, rtol=1e-5, atol=1e-6)


def test_swiglu_ffn_matches_formula():
    x = random((3, 4))
    gate, up, down = random((6, 4), seed=7), random((6, 4), seed=8), random((4, 6), seed=9)
    a = x @ gate.T
    expected = ((a / (1.0 + np.exp(-a))) * (x @ up.T)) @ down.T
    np.testing.assert_allclose(ops.swiglu_ffn(x, gate, up, down), expected, rtol=1e-5, atol=1e-5)


def rotary_by_complex_numbers(x, positions, n_rot, base):
    """Rotate pair (i, i + n_rot/2) as the complex number x_i + 1j * x_{i + n_rot/2}."""
    half = n_rot // 2
    out = x.astype(np.float64).copy()
    for t, position in enumerate(positions):
        for h in range(x.shape[1]):
            for i in range(half):
                z = complex(x[t, h, i], x[t, h, i + half])
                angle = position * base ** (-2 * i / n_rot)
                z *= complex(math.cos(angle), math.sin(angle))
                out[t, h, i], out[t, h, i + half] = z.real, z.imag
    return out


@pytest.mark.parametrize("n_rot", [2, 8, 16])
def test_rotary_matches_complex_rotation(n_rot):
    x = random((5, 3, 16))
    positions = np.array([0, 1, 2, 7, 100])
    y = ops.rotary_neox(x, positions, n_rot, 10000.0)
    np.testing.assert_allclose(y, rotary_by_complex_numbers(x, positions, n_rot, 10000.0), rtol=1e-5, atol=1e-5)


def test_rotary_passes_through_tail():
    x = random((4, 2, 12))
    y = ops.rotary_neox(x, np.arange(4), 4, 10000.0)
    np.testing.assert_array_equal(y[..., 4:], x[..., 4:])
    np.testing.assert_allclose(y[0], x[0], atol=1e-7)


def test_rotary_dot_depends_on_offset():
    q, k = random((1, 1, 8)), random((1, 1, 8), seed=10)

    def score(m, n):
        qm = ops.rotary_neox(q, np.array([m]), 8, 10000.0)
        kn = ops.rotary_neox(k, np.array([n]), 8, 10000.0)
        return float(np.sum(qm * kn))

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)


def attention_by_loops(q, k, v, scale):
    n_tokens, n_head, _ = q.shape
    group = n_head // k.shape[1]
    out = np.zeros(q.shape, dtype=np.float64)
    for t in range(n_tokens):
        for h in range(n_head):
            kv = h // group
            scores = np.array([np.dot(q[t, h], k[s, kv]) * scale for s in range(t + 1)], dtype=np.float64)
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            out[t, h] = sum(weights[s] * v[s, kv] for s in range(t + 1))
    return out


@pytest.mark.parametrize("n_head,n_head_kv", [(4, 4), (4, 2), (6, 1)])
def test_causal_attention_matches_loops(n_head, n_head_kv):
    q, k, v = random((7, n_head, 8)), random((7, n_head_kv, 8), seed=11), random((7, n_head_kv, 8), seed=12)
    y = ops.causal_attention(q, k, v, scale=1 / math.sqrt(8))
    np.testing.assert_allclose(y, attention_by_loops(q, k, v, 1 / math.sqrt(8)), rtol=1e-5, atol=1e-6)


def test_causal_attention_row_blocks(monkeypatch):
    q, k, v = random((11, 4, 8)), random((11, 2, 8), seed=13), random((11, 2, 8), seed=14)
    whole = ops.causal_attention(q, k, v, scale=0.3)
    monkeypatch.setattr(ops, "ATTENTION_BLOCK_ROWS", 3)
    blocked = ops.causal_attention(q, k, v, scale=0.3)
    np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-7)


def test_causal_attention_first_row_is_first_value():
    q, k, v = random((3, 2, 4)), random((3, 1, 4), seed=15), random((3, 1, 4), seed=16)
    y = ops.causal_attention(q, k, v, scale=1.0)
    np.testing.assert_allclose(y[0, 0], v[0, 0], rtol=1e-6)
    np.testing.assert_allclose(y[0, 1], v[0, 0], rtol=1e-6)


def test_causal_conv1d_matches_loop():
    x, kernel = random((6, 5)), random((5, 4), seed=17)
    y = ops.causal_conv1d(x, kernel)
    for t in range(6):
        for c in range(5):
            expected = sum(kernel[c, j] * x[t - 3 + j, c] for j in range(4) if t - 3 + j >= 0)
            assert y[t, c] == pytest.approx(expected, abs=1e-5)


def test_causal_conv1d_matches_numpy_convolve():
    x, kernel = random((9, 3)), random((3, 4), seed=18)
    y = ops.causal_conv1d(x, kernel)
    for c in range(3):
        # np.convolve flips its second argument, so flip the kernel back; the first T outputs are causal.
        expected = np.convolve(x[:, c], kernel[c, ::-1])[:9]
        np.testing.assert_allclose(y[:, c], expected, rtol=1e-5, atol=1e-6)


def delta_rule_inputs(n_tokens, n_heads=3, key_dim=8, value_dim=6, seed=RNG_SEED):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_tokens, n_heads, key_dim)).astype(np.float32)
    k = rng.standard_normal((n_tokens, n_heads, key_dim)).astype(np.float32)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal((n_tokens, n_heads, value_dim)).astype(np.float32)
    log_decay = -rng.uniform(0.0, 2.0, (n_tokens, n_heads)).astype(np.float32)
    beta = rng.uniform(0.0, 1.0, (n_tokens, n_heads)).astype(np.float32)
    return q, k, v, log_decay, beta


def delta_rule_by_loops(q, k, v, log_decay, beta, state=None):
    """The recurrence written with one explicit matrix per head, in float64."""
    n_tokens, n_heads, key_dim = k.shape
    states = [
        np.zeros((key_dim, v.shape[-1])) if state is None else state[h].astype(np.float64) for h in range(n_heads)
    ]
    out = np.zeros(v.shape)
    for t in range(n_tokens):
        for h in range(n_heads):
            s = states[h] * math.exp(log_decay[t, h])
            error = v[t, h] - k[t, h] @ s
            s = s + beta[t, h] * np.outer(k[t, h], error)
            out[t, h] = q[t, h] @ s
            states[h] = s
    return out, np.stack(states)


def test_delta_rule_matches_loops():
    inputs = delta_rule_inputs(20)
    out, state = ops.gated_delta_rule(*inputs)
    expected_out, expected_state = delta_rule_by_loops(*inputs)
    np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state, expected_state, rtol=1e-4, atol=1e-5)


def test_delta_rule_recalls_orthonormal_keys():
    # With no decay and beta = 1, writing value v_i under orthonormal key e_i stores it exactly,
    # so querying with e_i reads v_i back.
    n_tokens, dim = 4, 4
    keys = np.eye(dim, dtype=np.float32)[:, None, :]  # [T, 1, d]
    values = random((n_tokens, 1, 3))
    queries = keys[::-1].copy()
    out, state = ops.gated_delta_rule(
        queries, keys, values, np.zeros((n_tokens, 1), np.float32), np.ones((n_tokens, 1), np.float32)
    )
    np.testing.assert_allclose(state[0], values[:, 0], atol=1e-6)
    np.testing.assert_allclose(out[-1, 0], values[0, 0], atol=1e-6)


@pytest.mark.parametrize("n_tokens,chunk_size", [(1, 64), (20, 64), (64, 64), (150, 64), (23, 5), (9, 1)])
def test_chunked_delta_rule_matches_recurrent(n_tokens, chunk_size):
    inputs = delta_rule_inputs(n_tokens)
    out, state = ops.gated_delta_rule_chunked(*inputs, chunk_size=chunk_size)
    expected_out, expected_state = ops.gated_delta_rule(*inputs)
    np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(state, expected_state, rtol=1e-4, atol=2e-5)


def test_chunked_delta_rule_initial_state():
    inputs = delta_rule_inputs(30)
    initial = random((3, 8, 6), seed=19)
    out, state = ops.gated_delta_rule_chunked(*inputs, state=initial, chunk_size=8)
    expected_out, expected_state = delta_rule_by_loops(*inputs, state=initial)
    np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(state, expected_state, rtol=1e-4, atol=2e-5)


def test_chunked_delta_rule_continues_across_calls():
    q, k, v, g, b = delta_rule_inputs(40)
    first_out, first_state = ops.gated_delta_rule_chunked(q[:17], k[:17], v[:17], g[:17], b[:17])
    second_out, _ = ops.gated_delta_rule_chunked(q[17:], k[17:], v[17:], g[17:], b[17:], state=first_state)
    whole_out, _ = ops.gated_delta_rule_chunked(q, k, v, g, b)
    np.testing.assert_allclose(np.concatenate([first_out, second_out]), whole_out, rtol=1e-4, atol=2e-5)


@settings(max_examples=30, deadline=None)
@given(
    n_tokens=st.integers(1, 40),
    chunk_size=st.integers(1, 16),
    max_decay=st.floats(0.0, 8.0),
    seed=st.integers(0, 2**16),
)
def test_chunked_delta_rule_property(n_tokens, chunk_size, max_decay, seed):
    q, k, v, log_decay, beta = delta_rule_inputs(n_tokens, n_heads=2, key_dim=4, value_dim=3, seed=seed)
    log_decay = log_decay * np.float32(max_decay / 2.0)
    out, state = ops.gated_delta_rule_chunked(q, k, v, log_decay, beta, chunk_size=chunk_size)
    expected_out, expected_state = delta_rule_by_loops(q, k, v, log_decay, beta)
    np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=5e-5)
    np.testing.assert_allclose(state, expected_state, rtol=1e-4, atol=5e-5)
