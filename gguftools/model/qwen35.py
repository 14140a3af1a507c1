"""Forward pass of Qwen3.5/3.6 dense models (GGUF architecture ``qwen35``) and of their MTP head, in numpy.

References followed (read, not copied): llama.cpp ``src/models/qwen35.cpp`` (trunk graph and ``graph_mtp``),
``src/models/delta-net-base.cpp`` and ``conversion/qwen.py`` as vendored by llama-cpp-python 0.3.36, and
transformers 5.25 ``models/qwen3_5/modeling_qwen3_5.py``.

The trunk is a stack of pre-norm blocks. Each block is ``h += mixer(rms(h) * attn_norm)`` followed by
``h += ffn(rms(h) * post_attention_norm)`` with a SwiGLU feed-forward. The mixer is a Gated DeltaNet in
recurrent blocks and gated full attention in the others (see ``Qwen35HParams.recurrent_layers``). After
the last trunk block, ``output_norm`` gives the post-norm hidden state and ``output`` the logits.

Storage conventions of GGUF files written by llama.cpp's converter, applied here once and nowhere else:

- every RMSNorm weight except ``ssm_norm`` already contains ``1 + w``, so all norm weights multiply as stored;
- ``ssm_a`` holds ``-exp(A_log)``, the per-head decay rate, so the log decay is ``ssm_a * softplus(...)``;
- ``ssm_conv1d`` is ``[channels, kernel]`` (the Hugging Face singleton axis is squeezed);
- ``attn_q`` of full-attention blocks contains, per head, ``key_length`` query rows then ``key_length`` gate
  rows;
- value heads of a DeltaNet are tiled over key heads (value head ``j`` reads key head ``j % n_k``), where
  Hugging Face groups them (``j // (n_v / n_k)``); the converter reordered every value-head tensor.

Tensors read, per block ``N`` (each with ``.weight`` unless shown otherwise):

- every block: ``blk.N.attn_norm``, ``blk.N.post_attention_norm``, ``blk.N.ffn_gate``, ``ffn_up``,
  ``ffn_down``;
- full-attention blocks: ``blk.N.attn_q`` (or a fused ``attn_qkv``), ``attn_k``, ``attn_v``,
  ``attn_q_norm``, ``attn_k_norm``, ``attn_output``, and ``.bias`` of ``attn_q``/``attn_k``/``attn_v``
  when present;
- Gated DeltaNet blocks: ``blk.N.attn_qkv``, ``attn_gate``, ``ssm_conv1d``, ``ssm_dt.bias``, ``ssm_a``
  (no suffix), ``ssm_alpha``, ``ssm_beta``, ``ssm_norm``, ``ssm_out``;
- model: ``token_embd``, ``output_norm``, ``output`` (``token_embd`` when absent);
- MTP block: ``blk.N.nextn.eh_proj``, ``nextn.enorm``, ``nextn.hnorm``, optional ``nextn.embed_tokens``,
  ``nextn.shared_head_norm`` and ``nextn.shared_head_head``, and the full-attention block tensors above.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from gguftools.errors import GGUFToolsError, ModelError
from gguftools.model import ops
from gguftools.model.hparams import Qwen35HParams
from gguftools.model.vocab import VocabMatrix


class WeightSource(Protocol):
    """Source of the tensors for the forward pass: float32 arrays in numpy order, one tensor per call."""

    metadata: Mapping[str, object]

    def has(self, name: str) -> bool: ...

    def tensor(self, name: str) -> np.ndarray: ...


@dataclasses.dataclass
class TrunkOutput:
    """Results of the trunk on ``T`` tokens."""

    logits: np.ndarray  # [T, vocab]
    hidden_pre_norm: np.ndarray  # [T, embedding_length], last trunk block's output
    hidden_post_norm: np.ndarray  # [T, embedding_length], after output_norm


class Qwen35Model:
    """A ``qwen35`` model whose weights stay in ``weights`` until a block runs.

    ``forward`` fetches each block's tensors when the block runs and drops them after, so peak memory is
    about one block's weights (or the embedding/output matrix) plus the activations.
    """

    def __init__(
        self,
        weights: WeightSource,
        hparams: Qwen35HParams | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.weights = weights
        self.path = path if path is not None else getattr(weights, "path", None)
        self.hparams = hparams if hparams is not None else Qwen35HParams.from_metadata(weights.metadata, path=self.path)

    def forward(self, tokens: Sequence[int] | np.ndarray) -> TrunkOutput:
        """Run the trunk on token ids ``[T]`` and return logits and the hidden states around the final norm."""
        hp = self.hparams
        table = self._fetch("token_embd.weight", (None, hp.embedding_length))
        tokens = _check_tokens(tokens, table.shape[0], self.path)
        positions = np.arange(len(tokens))

        hidden = embed(tokens, table)  # [T] -> [T, d]
        del table
        for block in range(hp.trunk_block_count):
            recurrent = hp.is_recurrent(block)
            layer = self._block_tensors(block, recurrent)
            hidden = decoder_block(hidden, layer, hp, positions, recurrent)
            del layer

        hidden_post_norm = ops.rms_norm(hidden, self._fetch("output_norm.weight"), hp.rms_norm_eps)
        logits = ops.linear(hidden_post_norm, self._output_matrix())  # [T, d] -> [T, vocab]
        return TrunkOutput(logits=logits, hidden_pre_norm=hidden, hidden_post_norm=hidden_post_norm)

    def forward_windows(self, windows: Sequence[np.ndarray]) -> list[WindowStates]:
        """Run the trunk on several token windows, each independently, and keep what scoring needs.

        Each block's weights are loaded once for all windows, and the vocabulary matrices are read in row
        slices (``VocabMatrix``), so memory is one block's weights, every window's activations and one slice.
        Instead of logits, each window gets its greedy ``top_tokens``.
        """
        hp = self.hparams
        table = VocabMatrix(self.weights, "token_embd.weight", hp.embedding_length, self.path)
        windows = [_check_tokens(window, table.shape[0], self.path) for window in windows]
        lengths = [len(window) for window in windows]
        bounds = np.cumsum(lengths)[:-1]
        hidden = np.split(table[np.concatenate(windows)], bounds)  # [sum T, d] -> one [T, d] per window
        del table

        for block in range(hp.trunk_block_count):
            recurrent = hp.is_recurrent(block)
            layer = self._block_tensors(block, recurrent)
            hidden = [decoder_block(h, layer, hp, np.arange(len(h)), recurrent) for h in hidden]
            del layer

        norm = self._fetch("output_norm.weight", (hp.embedding_length,))
        post = [ops.rms_norm(h, norm, hp.rms_norm_eps) for h in hidden]
        output = VocabMatrix(self.weights, self._output_name(), hp.embedding_length, self.path)
        top = np.split(output.top_tokens(np.concatenate(post)), bounds)
        return [WindowStates(pre, post_norm, tokens) for pre, post_norm, tokens in zip(hidden, post, top)]

    def load_mtp_head(self, block: int | None = None, lazy_vocab: bool = False) -> MTPHead:
        """Load the MTP block ``block`` (an absolute block index; the first MTP block when None).

        With ``lazy_vocab``, the embedding and output matrices stay in the file as ``VocabMatrix`` objects:
        use ``MTPHead.final_hidden`` and ``VocabMatrix.top_tokens`` then, since ``logits`` needs them whole.
        """
        hp = self.hparams
        if hp.nextn_predict_layers == 0:
            raise ModelError(f"{hp.arch}.nextn_predict_layers is 0, so the model has no MTP block", self.path)
        if block is None:
            block = hp.trunk_block_count
        if block not in hp.mtp_blocks:
            raise ModelError(
                f"block {block} is not an MTP block (MTP blocks are {hp.mtp_blocks.start} to {hp.mtp_blocks.stop - 1})",
                self.path,
            )
        nextn = f"blk.{block}.nextn"
        d = hp.embedding_length

        embed_name = f"{nextn}.embed_tokens.weight"
        if not self.weights.has(embed_name):
            embed_name = "token_embd.weight"
        norm_name = f"{nextn}.shared_head_norm.weight"
        if not self.weights.has(norm_name):
            norm_name = "output_norm.weight"
        head_name = f"{nextn}.shared_head_head.weight"
        if not self.weights.has(head_name):
            head_name = "output.weight" if self.weights.has("output.weight") else "token_embd.weight"

        if lazy_vocab:
            embedding = VocabMatrix(self.weights, embed_name, d, self.path)
            output = VocabMatrix(self.weights, head_name, d, self.path)
        else:
            embedding = self._fetch(embed_name, (None, d))
            # Tied files use one matrix for both; fetch it once.
            output = embedding if head_name == embed_name else self._fetch(head_name, (embedding.shape[0], d))
        return MTPHead(
            hparams=hp,
            block=block,
            embedding=embedding,
            eh_proj=self._fetch(f"{nextn}.eh_proj.weight", (d, 2 * d)),
            enorm=self._fetch(f"{nextn}.enorm.weight", (d,)),
            hnorm=self._fetch(f"{nextn}.hnorm.weight", (d,)),
            layer=self._block_tensors(block, recurrent=False),
            head_norm=self._fetch(norm_name, (d,)),
            output=output,
            path=self.path,
        )

    def _fetch(self, name: str, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
        return fetch_tensor(self.weights, name, shape, self.path)

    def _output_name(self) -> str:
        return "output.weight" if self.weights.has("output.weight") else "token_embd.weight"

    def _output_matrix(self) -> np.ndarray:
        return self._fetch(self._output_name(), (None, self.hparams.embedding_length))

    def _block_tensors(self, block: int, recurrent: bool) -> dict[str, np.ndarray]:
        return block_tensors(self.weights, self.hparams, block, recurrent, self.path)


@dataclasses.dataclass
class WindowStates:
    """Hidden states and greedy tokens of one window of ``T`` tokens, as ``forward_windows`` returns them."""

    hidden_pre_norm: np.ndarray  # [T, embedding_length]
    hidden_post_norm: np.ndarray  # [T, embedding_length]
    top_tokens: np.ndarray  # [T], the trunk's greedy prediction for the next position


@dataclasses.dataclass
class MTPHead:
    """A loaded MTP block: given the target's hidden state ``h_t`` and token ``x_{t+1}``, it predicts ``x_{t+2}``.

    Load it once with ``Qwen35Model.load_mtp_head`` and call ``logits`` for each hidden-state variant
    (pre-norm and post-norm) without reading the weights again.
    """

    hparams: Qwen35HParams
    block: int
    embedding: np.ndarray | VocabMatrix  # [vocab, d]
    eh_proj: np.ndarray  # [d, 2d]
    enorm: np.ndarray  # [d]
    hnorm: np.ndarray  # [d]
    layer: dict[str, np.ndarray]  # full-attention block tensors, keyed as in block_tensors
    head_norm: np.ndarray  # [d]
    output: np.ndarray | VocabMatrix  # [vocab, d]
    path: str | os.PathLike[str] | None = None

    def logits(self, hidden: np.ndarray, next_tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Return head logits ``[T, vocab]``; row ``t`` scores ``x_{t+2}`` from ``hidden[t]`` and ``next_tokens[t]``.

        ``hidden`` is ``[T, d]`` (pre- or post-norm trunk states) and ``next_tokens`` is ``[T]``. Attention
        is causal over the rows, with rotary positions ``0..T-1``. Rotary attention depends only on position
        differences, so adding one offset to every position gives the same result up to rounding.
        """
        return ops.linear(self.final_hidden(hidden, next_tokens), self.output)  # [T, d] -> [T, vocab]

    def final_hidden(self, hidden: np.ndarray, next_tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Return the head's normed output ``[T, d]``, the input of its vocabulary projection."""
        _, block_out = self.block_states(hidden, next_tokens)
        return ops.rms_norm(block_out, self.head_norm, self.hparams.rms_norm_eps)

    def block_states(
        self, hidden: np.ndarray, next_tokens: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``eh_proj`` output and the decoder block output, both ``[T, d]``, for ``logits``' inputs."""
        hp = self.hparams
        next_tokens = _check_tokens(next_tokens, self.embedding.shape[0], self.path)
        hidden = np.asarray(hidden, dtype=np.float32)
        if hidden.shape != (len(next_tokens), hp.embedding_length):
            raise GGUFToolsError(
                f"hidden states have shape {list(hidden.shape)}, expected "
                f"[{len(next_tokens)}, {hp.embedding_length}] (one row per next token)"
            )
        positions = np.arange(len(next_tokens))

        # Embedding first, hidden state second, as llama.cpp's graph_mtp concatenates them.
        token_part = ops.rms_norm(embed(next_tokens, self.embedding), self.enorm, hp.rms_norm_eps)
        hidden_part = ops.rms_norm(hidden, self.hnorm, hp.rms_norm_eps)
        projected = ops.linear(np.concatenate([token_part, hidden_part], axis=-1), self.eh_proj)  # [T, 2d] -> [T, d]

        block_out = decoder_block(projected, self.layer, hp, positions, recurrent=False)
        return projected, block_out


def embed(tokens: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.asarray(table[tokens], dtype=np.float32)  # [T] -> [T, d]


def decoder_block(
    hidden: np.ndarray,
    layer: Mapping[str, np.ndarray],
    hp: Qwen35HParams,
    positions: np.ndarray,
    recurrent: bool,
) -> np.ndarray:
    """Apply one pre-norm block: token mixer with residual, then SwiGLU feed-forward with residual."""
    normed = ops.rms_norm(hidden, layer["attn_norm"], hp.rms_norm_eps)
    if recurrent:
        hidden = hidden + gated_deltanet(normed, layer, hp)
    else:
        hidden = hidden + gated_attention(normed, layer, hp, positions)

    normed = ops.rms_norm(hidden, layer["post_attention_norm"], hp.rms_norm_eps)
    return hidden + ops.swiglu_ffn(normed, layer["ffn_gate"], layer["ffn_up"], layer["ffn_down"])


def gated_attention(
    x: np.ndarray, layer: Mapping[str, np.ndarray], hp: Qwen35HParams, positions: np.ndarray
) -> np.ndarray:
    """Full causal attention with per-head RMSNorm on queries and keys and a sigmoid output gate."""
    n_tokens = x.shape[0]
    head_dim = hp.key_length

    query_and_gate = ops.linear(x, layer["attn_q"], layer.get("attn_q.bias"))
    query_and_gate = query_and_gate.reshape(n_tokens, hp.head_count, 2 * head_dim)  # [T, h * 2d_h] -> [T, h, 2d_h]
    query, gate = query_and_gate[..., :head_dim], query_and_gate[..., head_dim:]
    key = ops.linear(x, layer["attn_k"], layer.get("attn_k.bias")).reshape(n_tokens, hp.head_count_kv, head_dim)
    value = ops.linear(x, layer["attn_v"], layer.get("attn_v.bias")).reshape(n_tokens, hp.head_count_kv, head_dim)

    query = ops.rms_norm(query, layer["attn_q_norm"], hp.rms_norm_eps)
    key = ops.rms_norm(key, layer["attn_k_norm"], hp.rms_norm_eps)
    # Text tokens have one position in every rotary section, so multi-section RoPE reduces to plain NeoX.
    query = ops.rotary_neox(query, positions, hp.rope_dimension_count, hp.rope_freq_base)
    key = ops.rotary_neox(key, positions, hp.rope_dimension_count, hp.rope_freq_base)

    attended = ops.causal_attention(query, key, value, scale=1.0 / math.sqrt(head_dim))  # [T, h, d_h]
    gated = attended * ops.sigmoid(gate)
    return ops.linear(gated.reshape(n_tokens, -1), layer["attn_output"])  # [T, h * d_h] -> [T, d]


def gated_deltanet(x: np.ndarray, layer: Mapping[str, np.ndarray], hp: Qwen35HParams) -> np.ndarray:
    """Gated DeltaNet token mixer: causal conv, L2-normed queries and keys, gated delta rule, gated norm."""
    n_tokens = x.shape[0]
    n_k_heads, n_v_heads = hp.ssm_group_count, hp.ssm_time_step_rank
    key_dim, value_dim = hp.ssm_state_size, hp.ssm_value_head_dim

    mixed = ops.linear(x, layer["attn_qkv"])  # [T, d] -> [T, 2 * n_k * d_k + n_v * d_v]
    mixed = ops.silu(ops.causal_conv1d(mixed, layer["ssm_conv1d"]))
    q_end = n_k_heads * key_dim
    query = mixed[:, :q_end].reshape(n_tokens, n_k_heads, key_dim)
    key = mixed[:, q_end : 2 * q_end].reshape(n_tokens, n_k_heads, key_dim)
    value = mixed[:, 2 * q_end :].reshape(n_tokens, n_v_heads, value_dim)

    # transformers uses a fixed 1e-6 here and llama.cpp the model's RMS epsilon. They agree when the file's
    # epsilon is 1e-6, the transformers default for Qwen3.5.
    query = ops.l2_normalize(query, hp.rms_norm_eps) / np.float32(math.sqrt(key_dim))
    key = ops.l2_normalize(key, hp.rms_norm_eps)
    # Value heads are tiled over key heads in GGUF files, so np.tile matches value head j with key head j % n_k.
    repeats = n_v_heads // n_k_heads
    query = np.tile(query, (1, repeats, 1))  # [T, n_k, d_k] -> [T, n_v, d_k]
    key = np.tile(key, (1, repeats, 1))

    beta = ops.sigmoid(ops.linear(x, layer["ssm_beta"]))  # [T, n_v]
    log_decay = layer["ssm_a"] * ops.softplus(ops.linear(x, layer["ssm_alpha"]) + layer["ssm_dt.bias"])  # [T, n_v]
    core, _ = ops.gated_delta_rule_chunked(query, key, value, log_decay, beta)  # [T, n_v, d_v]

    gate = ops.linear(x, layer["attn_gate"]).reshape(n_tokens, n_v_heads, value_dim)
    core = ops.gated_rms_norm(core, layer["ssm_norm"], gate, hp.rms_norm_eps)
    return ops.linear(core.reshape(n_tokens, -1), layer["ssm_out"])  # [T, n_v * d_v] -> [T, d]


def block_tensors(
    weights: WeightSource,
    hp: Qwen35HParams,
    block: int,
    recurrent: bool,
    path: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """Fetch one block's tensors, keyed by name without ``blk.N.`` and ``.weight``, with their shapes checked."""
    d = hp.embedding_length
    prefix = f"blk.{block}."
    expected: dict[str, tuple[int, ...]] = {
        "attn_norm": (d,),
        "post_attention_norm": (d,),
        "ffn_gate": (hp.feed_forward_length, d),
        "ffn_up": (hp.feed_forward_length, d),
        "ffn_down": (d, hp.feed_forward_length),
    }
    optional: dict[str, tuple[int, ...]] = {}
    if recurrent:
        n_v, d_v, d_k = hp.ssm_time_step_rank, hp.ssm_value_head_dim, hp.ssm_state_size
        conv_channels = 2 * hp.ssm_group_count * d_k + n_v * d_v
        expected |= {
            "attn_qkv": (conv_channels, d),
            "attn_gate": (n_v * d_v, d),
            "ssm_conv1d": (conv_channels, hp.ssm_conv_kernel),
            "ssm_dt.bias": (n_v,),
            "ssm_a": (n_v,),
            "ssm_alpha": (n_v, d),
            "ssm_beta": (n_v, d),
            "ssm_norm": (d_v,),
            "ssm_out": (d, n_v * d_v),
        }
    else:
        head_dim = hp.key_length
        q_rows, kv_rows = 2 * hp.head_count * head_dim, hp.head_count_kv * head_dim
        expected |= {
            "attn_q_norm": (head_dim,),
            "attn_k_norm": (head_dim,),
            "attn_output": (d, hp.head_count * head_dim),
        }
        optional = {"attn_q.bias": (q_rows,), "attn_k.bias": (kv_rows,), "attn_v.bias": (kv_rows,)}
        if weights.has(f"{prefix}attn_q.weight") or not weights.has(f"{prefix}attn_qkv.weight"):
            expected |= {"attn_q": (q_rows, d), "attn_k": (kv_rows, d), "attn_v": (kv_rows, d)}

    layer = {}
    for key, shape in expected.items():
        layer[key] = fetch_tensor(weights, _tensor_name(prefix, key), shape, path)
    for key, shape in optional.items():
        if weights.has(_tensor_name(prefix, key)):
            layer[key] = fetch_tensor(weights, _tensor_name(prefix, key), shape, path)
    if not recurrent and "attn_q" not in layer:
        layer |= _split_fused_qkv(weights, hp, prefix, path)
    return layer


def _split_fused_qkv(
    weights: WeightSource, hp: Qwen35HParams, prefix: str, path: str | os.PathLike[str] | None
) -> dict[str, np.ndarray]:
    """Split a full-attention block's fused ``attn_qkv`` (query-and-gate rows, then key, then value rows)."""
    d, head_dim = hp.embedding_length, hp.key_length
    q_rows, kv_rows = 2 * hp.head_count * head_dim, hp.head_count_kv * head_dim
    fused = fetch_tensor(weights, f"{prefix}attn_qkv.weight", (q_rows + 2 * kv_rows, d), path)
    return {
        "attn_q": fused[:q_rows],
        "attn_k": fused[q_rows : q_rows + kv_rows],
        "attn_v": fused[q_rows + kv_rows :],
    }


def _tensor_name(prefix: str, key: str) -> str:
    """Return the GGUF name of a block tensor: ``ssm_a`` has no suffix, biases end in ``.bias`` already."""
    if key == "ssm_a" or key.endswith(".bias"):
        return prefix + key
    return f"{prefix}{key}.weight"


def fetch_tensor(
    weights: WeightSource,
    name: str,
    shape: tuple[int | None, ...] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Return tensor ``name`` as float32, raising ModelError if it is absent or its shape differs from ``shape``.

    ``None`` in ``shape`` accepts any length on that axis.
    """
    if not weights.has(name):
        raise ModelError(f"tensor {name!r} not found", path)
    array = np.asarray(weights.tensor(name), dtype=np.float32)
    if shape is not None:
        matches = array.ndim == len(shape) and all(
            want is None or have == want for have, want in zip(array.shape, shape)
        )
        if not matches:
            shown = ", ".join("any" if want is None else str(want) for want in shape)
            raise ModelError(f"tensor {name!r} has shape {list(array.shape)}, expected [{shown}]", path)
    return array


def _check_tokens(
    tokens: Sequence[int] | np.ndarray, vocab_size: int, path: str | os.PathLike[str] | None
) -> np.ndarray:
    array = np.asarray(tokens)
    if array.ndim != 1 or len(array) == 0:
        raise GGUFToolsError(f"expected a non-empty 1-D sequence of token ids, got shape {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.integer):
        raise GGUFToolsError(f"expected integer token ids, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= vocab_size:
        bad = int(array.min()) if array.min() < 0 else int(array.max())
        raise ModelError(f"token id {bad} is outside the vocabulary ({vocab_size} tokens)", path)
    return array.astype(np.int64)
