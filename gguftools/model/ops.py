"""The numpy operations that the forward passes are built from.

Each function is pure and works in float32 on arrays whose first axis is the token position ``T``.
Weights are used exactly as the GGUF file stores them: a matrix is ``[out_features, in_features]`` and an
RMSNorm weight is the full multiplier (files that store ``1 + w`` already did that addition).

References followed (read, not copied):

- llama.cpp ``ggml/src/ggml-cpu/ops.cpp`` (NeoX rotary layout) and ``src/models/delta-net-base.cpp``
  (chunked gated delta rule);
- transformers 5.25 ``models/qwen3_5/modeling_qwen3_5.py`` (``torch_recurrent_gated_delta_rule``,
  ``torch_chunk_gated_delta_rule``, ``l2norm``, ``causal_conv1d_fn``, ``eager_attention_forward``).
"""

from __future__ import annotations

import numpy as np

# Query rows per block in causal_attention: bounds the score buffer to [n_head, 256, T].
ATTENTION_BLOCK_ROWS = 256

# Tokens per chunk in gated_delta_rule_chunked, the chunk size that llama.cpp and transformers use.
DELTA_RULE_CHUNK = 64


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Apply ``x @ weight.T (+ bias)`` with ``weight`` stored as ``[out_features, in_features]``."""
    y = x @ weight.T  # [T, in] -> [T, out]
    if bias is not None:
        y = y + bias
    return y


def sigmoid(x: np.ndarray) -> np.ndarray:
    # 0.5 * (1 + tanh(x / 2)) equals 1 / (1 + exp(-x)) and does not overflow for large |x|.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def softplus(x: np.ndarray) -> np.ndarray:
    """Compute ``log(1 + exp(x))`` without overflow."""
    return np.logaddexp(np.float32(0.0), x)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Normalize the last axis to unit root mean square, then scale by ``weight``."""
    mean_square = np.mean(np.square(x), axis=-1, keepdims=True)
    return x / np.sqrt(mean_square + np.float32(eps)) * weight


def l2_normalize(x: np.ndarray, eps: float) -> np.ndarray:
    """Divide the last axis by ``sqrt(sum(x**2) + eps)``, as the Gated DeltaNet does to queries and keys."""
    return x / np.sqrt(np.sum(np.square(x), axis=-1, keepdims=True) + np.float32(eps))


def gated_rms_norm(x: np.ndarray, weight: np.ndarray, gate: np.ndarray, eps: float) -> np.ndarray:
    """Apply ``rms_norm(x) * silu(gate)``: the output norm of a Gated DeltaNet layer."""
    return rms_norm(x, weight, eps) * silu(gate)


def swiglu_ffn(x: np.ndarray, gate: np.ndarray, up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Compute the SwiGLU feed-forward ``down(silu(gate(x)) * up(x))``."""
    hidden = silu(linear(x, gate)) * linear(x, up)  # [T, d] -> [T, d_ff]
    return linear(hidden, down)  # [T, d_ff] -> [T, d]


def rotary_neox(x: np.ndarray, positions: np.ndarray, n_rot: int, freq_base: float) -> np.ndarray:
    """Rotate the first ``n_rot`` dims of each head by position, in the NeoX ("rotate half") layout.

    ``x`` is ``[T, n_head, head_dim]``. Dim ``i < n_rot/2`` is paired with dim ``i + n_rot/2`` and the pair
    turns by ``position * freq_base ** (-2i / n_rot)``. Dims from ``n_rot`` on pass through unchanged.
    """
    half = n_rot // 2
    inv_freq = freq_base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_rot)  # [n_rot/2]
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]  # [T] -> [T, n_rot/2]
    cos = np.cos(angles).astype(np.float32)[:, None, :]  # [T, 1, n_rot/2]
    sin = np.sin(angles).astype(np.float32)[:, None, :]

    first = x[..., :half]
    second = x[..., half:n_rot]
    rotated = np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return np.concatenate([rotated, x[..., n_rot:]], axis=-1)


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Causal softmax attention with grouped key/value heads.

    ``q`` is ``[T, n_head, d]``; ``k`` and ``v`` are ``[T, n_head_kv, d]``, and query head ``h`` reads
    key/value head ``h // (n_head / n_head_kv)``. Returns ``[T, n_head, d]``. Query rows are processed in
    blocks of ``ATTENTION_BLOCK_ROWS`` so that long inputs never hold the full ``[n_head, T, T]`` scores.
    """
    n_tokens, n_head, head_dim = q.shape
    n_head_kv = k.shape[1]
    group = n_head // n_head_kv

    q_grouped = q.reshape(n_tokens, n_head_kv, group, head_dim).transpose(1, 2, 0, 3)  # [T, h, d] -> [kv, g, T, d]
    k_heads = k.transpose(1, 0, 2)  # [T, kv, d] -> [kv, T, d]
    v_heads = v.transpose(1, 0, 2)

    out = np.empty((n_head_kv, group, n_tokens, head_dim), dtype=np.float32)
    for start in range(0, n_tokens, ATTENTION_BLOCK_ROWS):
        stop = min(start + ATTENTION_BLOCK_ROWS, n_tokens)
        # Rows start..stop-1 can see keys 0..stop-1 only.
        scores = np.einsum("kgqd,ktd->kgqt", q_grouped[:, :, start:stop], k_heads[:, :stop]) * np.float32(scale)
        future = np.arange(stop)[None, :] > np.arange(start, stop)[:, None]  # [rows, stop]
        scores[..., future] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(axis=-1, keepdims=True)
        out[:, :, start:stop] = np.einsum("kgqt,ktd->kgqd", weights, v_heads[:, :stop])
    return out.transpose(2, 0, 1, 3).reshape(n_tokens, n_head, head_dim)  # [kv, g, T, d] -> [T, h, d]


def causal_conv1d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Depthwise causal convolution: ``y[t, c] = sum_j kernel[c, j] * x[t - K + 1 + j, c]``.

    ``x`` is ``[T, C]`` and ``kernel`` is ``[C, K]``; positions before the first token count as zero.
    """
    n_tokens, _ = x.shape
    width = kernel.shape[1]
    padded = np.concatenate([np.zeros((width - 1, x.shape[1]), dtype=x.dtype), x], axis=0)  # [T + K - 1, C]
    y = np.zeros_like(x)
    for j in range(width):
        y += padded[j : j + n_tokens] * kernel[:, j]
    return y


def gated_delta_rule(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    log_decay: np.ndarray,
    beta: np.ndarray,
    state: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the gated delta rule one token at a time.

    Shapes: ``q`` and ``k`` ``[T, H, d_k]`` (already normalized and scaled as the caller wants), ``v``
    ``[T, H, d_v]``, ``log_decay`` and ``beta`` ``[T, H]``, ``state`` ``[H, d_k, d_v]`` (zeros if None).
    For each token: ``S = exp(g) S``, then ``S += k (beta (v - k^T S))^T``, then ``o = q^T S``.
    Returns the outputs ``[T, H, d_v]`` and the final state.
    """
    n_tokens, n_heads, key_dim = k.shape
    value_dim = v.shape[-1]
    if state is None:
        state = np.zeros((n_heads, key_dim, value_dim), dtype=np.float32)
    out = np.empty((n_tokens, n_heads, value_dim), dtype=np.float32)
    decay = np.exp(log_decay)
    for t in range(n_tokens):
        state = state * decay[t][:, None, None]
        predicted = np.einsum("hk,hkv->hv", k[t], state)  # what the memory returns for key k_t
        delta = (v[t] - predicted) * beta[t][:, None]  # [H, d_v]
        state = state + k[t][:, :, None] * delta[:, None, :]  # rank-one write [H, d_k, d_v]
        out[t] = np.einsum("hk,hkv->hv", q[t], state)
    return out, state


def gated_delta_rule_chunked(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    log_decay: np.ndarray,
    beta: np.ndarray,
    state: np.ndarray | None = None,
    chunk_size: int = DELTA_RULE_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the gated delta rule chunk by chunk; same arguments and results as ``gated_delta_rule``.

    Inside a chunk of ``C`` tokens the recurrence is solved with matrix products (the WY form of the
    delta rule), so the Python loop runs ``T / C`` times instead of ``T`` times. With ``G`` the cumulative
    sum of ``log_decay`` within the chunk and ``S`` the state entering it:

    - with ``A = I + strict_lower(beta_i k_i.k_j exp(G_i - G_j))``, solving ``A U = beta v`` and
      ``A W = beta k exp(G)`` gives the corrected values ``U - W S``,
    - ``o_i = exp(G_i) q_i S + sum_{j<=i} exp(G_i - G_j) q_i.k_j (U - W S)_j``,
    - ``S' = exp(G_last) S + sum_j exp(G_last - G_j) k_j (U - W S)_j^T``.
    """
    n_tokens, n_heads, key_dim = k.shape
    value_dim = v.shape[-1]
    if state is None:
        state = np.zeros((n_heads, key_dim, value_dim), dtype=np.float32)
    out = np.empty((n_tokens, n_heads, value_dim), dtype=np.float32)

    for start in range(0, n_tokens, chunk_size):
        stop = min(start + chunk_size, n_tokens)
        size = stop - start
        q_c = q[start:stop].transpose(1, 0, 2)  # [C, H, d_k] -> [H, C, d_k]
        k_c = k[start:stop].transpose(1, 0, 2)
        v_c = v[start:stop].transpose(1, 0, 2)  # [H, C, d_v]
        beta_c = beta[start:stop].T[:, :, None]  # [C, H] -> [H, C, 1]
        cumulative = np.cumsum(log_decay[start:stop].T.astype(np.float64), axis=1)  # [H, C]

        # decay[h, i, j] = exp(G_i - G_j) for j <= i, else 0 (the exponent would be positive there).
        diff = cumulative[:, :, None] - cumulative[:, None, :]  # [H, C, C]
        lower = np.tril(np.ones((size, size), dtype=bool))
        decay = np.where(lower, np.exp(np.where(lower, diff, 0.0)), 0.0).astype(np.float32)

        key_products = k_c @ k_c.transpose(0, 2, 1)  # [H, C, C]
        strict = np.tril(beta_c * key_products * decay, k=-1)
        system = strict + np.eye(size, dtype=np.float32)
        decay_in = np.exp(cumulative).astype(np.float32)[:, :, None]  # [H, C, 1]
        solved_v = np.linalg.solve(system, beta_c * v_c)  # [H, C, d_v]
        solved_k = np.linalg.solve(system, beta_c * k_c * decay_in)  # [H, C, d_k]
        corrected = solved_v - solved_k @ state  # [H, C, d_v]

        intra = (q_c @ k_c.transpose(0, 2, 1)) * decay  # [H, C, C], lower triangle incl. diagonal
        out_c = (q_c * decay_in) @ state + intra @ corrected  # [H, C, d_v]
        out[start:stop] = out_c.transpose(1, 0, 2)

        decay_to_end = np.exp(cumulative[:, -1:] - cumulative).astype(np.float32)[:, :, None]  # [H, C, 1]
        chunk_decay = np.exp(cumulative[:, -1]).astype(np.float32)[:, None, None]  # [H, 1, 1]
        state = state * chunk_decay + (k_c * decay_to_end).transpose(0, 2, 1) @ corrected
    return out, state
