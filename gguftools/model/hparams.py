"""Hyper-parameters of a Qwen3.5/3.6 dense model (GGUF architecture ``qwen35``), read from GGUF metadata.

Key names follow llama.cpp: ``src/llama-arch.cpp`` (key templates), ``src/models/qwen35.cpp``
(``load_arch_hparams``) and the converter ``conversion/qwen.py`` (``Qwen3NextModel.set_gguf_parameters``,
which the Qwen3.5 converter inherits).

Which blocks are Gated DeltaNet ("recurrent") blocks comes from ``{arch}.attention.recurrent_layers`` (one
bool per block, MTP blocks included) when the file has it, as llama.cpp does. Otherwise block ``i`` of the
trunk is recurrent unless ``(i + 1) % {arch}.full_attention_interval == 0`` (interval 4 when absent), and
MTP blocks never are. The two keys can disagree: the llama.cpp converter (llama-cpp-python 0.3.36) writes
``full_attention_interval = 4`` whenever the Hugging Face config lists ``layer_types`` without an interval.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Mapping, Sequence

import numpy as np

from gguftools.errors import ModelError, UnsupportedError

SUPPORTED_ARCHITECTURES = ("qwen35",)

KEY_ARCHITECTURE = "general.architecture"
KEY_BLOCK_COUNT = "{arch}.block_count"
KEY_CONTEXT_LENGTH = "{arch}.context_length"
KEY_EMBEDDING_LENGTH = "{arch}.embedding_length"
KEY_FEED_FORWARD_LENGTH = "{arch}.feed_forward_length"
KEY_HEAD_COUNT = "{arch}.attention.head_count"
KEY_HEAD_COUNT_KV = "{arch}.attention.head_count_kv"
KEY_KEY_LENGTH = "{arch}.attention.key_length"
KEY_VALUE_LENGTH = "{arch}.attention.value_length"
KEY_RMS_EPS = "{arch}.attention.layer_norm_rms_epsilon"
KEY_RECURRENT_LAYERS = "{arch}.attention.recurrent_layers"
KEY_FULL_ATTENTION_INTERVAL = "{arch}.full_attention_interval"
KEY_ROPE_FREQ_BASE = "{arch}.rope.freq_base"
KEY_ROPE_DIMENSION_COUNT = "{arch}.rope.dimension_count"
KEY_ROPE_DIMENSION_SECTIONS = "{arch}.rope.dimension_sections"
KEY_SSM_CONV_KERNEL = "{arch}.ssm.conv_kernel"
KEY_SSM_STATE_SIZE = "{arch}.ssm.state_size"
KEY_SSM_GROUP_COUNT = "{arch}.ssm.group_count"
KEY_SSM_TIME_STEP_RANK = "{arch}.ssm.time_step_rank"
KEY_SSM_INNER_SIZE = "{arch}.ssm.inner_size"
KEY_NEXTN_PREDICT_LAYERS = "{arch}.nextn_predict_layers"

# llama.cpp's default when neither recurrent_layers nor full_attention_interval is present.
DEFAULT_FULL_ATTENTION_INTERVAL = 4
# llama.cpp's default rope base (10000) when the key is absent.
DEFAULT_ROPE_FREQ_BASE = 10000.0


@dataclasses.dataclass(frozen=True)
class Qwen35HParams:
    """Hyper-parameters of a ``qwen35`` model; field names follow the GGUF keys they come from."""

    arch: str
    block_count: int  # trunk blocks plus MTP blocks
    nextn_predict_layers: int  # MTP blocks, the last ones
    embedding_length: int
    feed_forward_length: int
    head_count: int
    head_count_kv: int
    key_length: int  # head dim of full-attention layers
    value_length: int
    rms_norm_eps: float
    rope_freq_base: float
    rope_dimension_count: int  # leading dims of each head that rotary rotates
    rope_dimension_sections: tuple[int, ...]  # multimodal sections; text uses one position for all
    recurrent_layers: tuple[bool, ...]  # one per block; True for Gated DeltaNet blocks
    ssm_conv_kernel: int
    ssm_state_size: int  # head dim of DeltaNet keys (and values)
    ssm_group_count: int  # DeltaNet key heads
    ssm_time_step_rank: int  # DeltaNet value heads
    ssm_inner_size: int  # DeltaNet value heads x value head dim
    context_length: int | None

    @property
    def trunk_block_count(self) -> int:
        return self.block_count - self.nextn_predict_layers

    @property
    def mtp_blocks(self) -> range:
        return range(self.trunk_block_count, self.block_count)

    @property
    def ssm_value_head_dim(self) -> int:
        return self.ssm_inner_size // self.ssm_time_step_rank

    def is_recurrent(self, block: int) -> bool:
        return self.recurrent_layers[block]

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, object],
        arch: str | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> Qwen35HParams:
        """Read and check the hyper-parameters; ``arch`` defaults to ``general.architecture``.

        Raises ``UnsupportedError`` for an architecture other than ``qwen35`` and ``ModelError`` for a
        missing, mistyped or inconsistent key. ``path`` only labels the error messages.
        """
        if arch is None:
            arch = metadata.get(KEY_ARCHITECTURE)
            if not isinstance(arch, str):
                raise ModelError(f"key {KEY_ARCHITECTURE!r} is missing or not a string", path)
        if arch not in SUPPORTED_ARCHITECTURES:
            supported = ", ".join(SUPPORTED_ARCHITECTURES)
            raise UnsupportedError(
                f"architecture {arch!r} has no forward pass in gguftools (supported: {supported})", path
            )
        keys = _KeyReader(metadata, arch, path)

        block_count = keys.integer(KEY_BLOCK_COUNT, minimum=1)
        nextn = keys.integer(KEY_NEXTN_PREDICT_LAYERS, default=0, minimum=0)
        if nextn >= block_count:
            raise ModelError(
                f"key {keys.name(KEY_NEXTN_PREDICT_LAYERS)!r} is {nextn}, which leaves no trunk blocks "
                f"out of {block_count}",
                path,
            )
        embedding_length = keys.integer(KEY_EMBEDDING_LENGTH, minimum=1)
        head_count = keys.integer(KEY_HEAD_COUNT, minimum=1)
        head_count_kv = keys.integer(KEY_HEAD_COUNT_KV, default=head_count, minimum=1)
        key_length = keys.integer(KEY_KEY_LENGTH, default=embedding_length // head_count, minimum=1)
        value_length = keys.integer(KEY_VALUE_LENGTH, default=key_length, minimum=1)

        hparams = cls(
            arch=arch,
            block_count=block_count,
            nextn_predict_layers=nextn,
            embedding_length=embedding_length,
            feed_forward_length=keys.integer(KEY_FEED_FORWARD_LENGTH, minimum=1),
            head_count=head_count,
            head_count_kv=head_count_kv,
            key_length=key_length,
            value_length=value_length,
            rms_norm_eps=keys.real(KEY_RMS_EPS),
            rope_freq_base=keys.real(KEY_ROPE_FREQ_BASE, default=DEFAULT_ROPE_FREQ_BASE),
            rope_dimension_count=keys.integer(KEY_ROPE_DIMENSION_COUNT, default=key_length, minimum=2),
            rope_dimension_sections=keys.integers(KEY_ROPE_DIMENSION_SECTIONS, default=()),
            recurrent_layers=_recurrent_layers(keys, block_count, nextn),
            ssm_conv_kernel=keys.integer(KEY_SSM_CONV_KERNEL, minimum=1),
            ssm_state_size=keys.integer(KEY_SSM_STATE_SIZE, minimum=1),
            ssm_group_count=keys.integer(KEY_SSM_GROUP_COUNT, minimum=1),
            ssm_time_step_rank=keys.integer(KEY_SSM_TIME_STEP_RANK, minimum=1),
            ssm_inner_size=keys.integer(KEY_SSM_INNER_SIZE, minimum=1),
            context_length=keys.integer(KEY_CONTEXT_LENGTH, default=None, minimum=1),
        )
        _check_consistency(hparams, keys)
        return hparams


def _recurrent_layers(keys: _KeyReader, block_count: int, nextn: int) -> tuple[bool, ...]:
    trunk = block_count - nextn
    flags = keys.booleans(KEY_RECURRENT_LAYERS)
    if flags is not None:
        if len(flags) != block_count:
            raise ModelError(
                f"key {keys.name(KEY_RECURRENT_LAYERS)!r} has {len(flags)} entries, expected one per block "
                f"({block_count})",
                keys.path,
            )
        if any(flags[trunk:]):
            raise ModelError(
                f"key {keys.name(KEY_RECURRENT_LAYERS)!r} marks an MTP block (blocks {trunk} to "
                f"{block_count - 1}) as recurrent, but MTP blocks are full-attention blocks",
                keys.path,
            )
        return flags
    interval = keys.integer(KEY_FULL_ATTENTION_INTERVAL, default=DEFAULT_FULL_ATTENTION_INTERVAL, minimum=1)
    return tuple(i < trunk and (i + 1) % interval != 0 for i in range(block_count))


def _check_consistency(hparams: Qwen35HParams, keys: _KeyReader) -> None:
    """Raise ModelError for combinations that the qwen35 graph cannot run."""
    problems = []
    if hparams.head_count % hparams.head_count_kv != 0:
        problems.append(
            f"{keys.name(KEY_HEAD_COUNT)} ({hparams.head_count}) is not a multiple of "
            f"{keys.name(KEY_HEAD_COUNT_KV)} ({hparams.head_count_kv})"
        )
    if hparams.key_length != hparams.value_length:
        problems.append(
            f"{keys.name(KEY_KEY_LENGTH)} ({hparams.key_length}) differs from "
            f"{keys.name(KEY_VALUE_LENGTH)} ({hparams.value_length})"
        )
    if hparams.rope_dimension_count > hparams.key_length or hparams.rope_dimension_count % 2 != 0:
        problems.append(
            f"{keys.name(KEY_ROPE_DIMENSION_COUNT)} ({hparams.rope_dimension_count}) must be even and at most "
            f"{keys.name(KEY_KEY_LENGTH)} ({hparams.key_length})"
        )
    if hparams.ssm_time_step_rank % hparams.ssm_group_count != 0:
        problems.append(
            f"{keys.name(KEY_SSM_TIME_STEP_RANK)} ({hparams.ssm_time_step_rank}, value heads) is not a multiple "
            f"of {keys.name(KEY_SSM_GROUP_COUNT)} ({hparams.ssm_group_count}, key heads)"
        )
    if hparams.ssm_inner_size != hparams.ssm_time_step_rank * hparams.ssm_state_size:
        # llama.cpp's delta-net graph needs value heads as wide as key heads (S_v == S_k).
        problems.append(
            f"{keys.name(KEY_SSM_INNER_SIZE)} ({hparams.ssm_inner_size}) is not "
            f"{keys.name(KEY_SSM_TIME_STEP_RANK)} x {keys.name(KEY_SSM_STATE_SIZE)} "
            f"({hparams.ssm_time_step_rank} x {hparams.ssm_state_size})"
        )
    if problems:
        raise ModelError("inconsistent hyper-parameters: " + "; ".join(problems), keys.path)


_MISSING = object()


class _KeyReader:
    """Typed access to ``{arch}.*`` keys with errors that name the key."""

    def __init__(self, metadata: Mapping[str, object], arch: str, path: str | os.PathLike[str] | None) -> None:
        self.metadata = metadata
        self.arch = arch
        self.path = path

    def name(self, template: str) -> str:
        return template.format(arch=self.arch)

    def _lookup(self, template: str, default: object) -> object:
        """Return the key's value, ``_MISSING`` if it is absent and has a default, or raise if it has none."""
        key = self.name(template)
        if key in self.metadata:
            return self.metadata[key]
        if default is _MISSING:
            raise ModelError(f"key {key!r} not found", self.path)
        return _MISSING

    def integer(self, template: str, default: object = _MISSING, minimum: int | None = None) -> int:
        value = self._lookup(template, default)
        if value is _MISSING:
            return default  # type: ignore[return-value]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise ModelError(f"key {self.name(template)!r} is {value!r}, expected an integer", self.path)
        if minimum is not None and value < minimum:
            raise ModelError(f"key {self.name(template)!r} is {value}, expected at least {minimum}", self.path)
        return int(value)

    def real(self, template: str, default: object = _MISSING) -> float:
        value = self._lookup(template, default)
        if value is _MISSING:
            return default  # type: ignore[return-value]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ModelError(f"key {self.name(template)!r} is {value!r}, expected a number", self.path)
        if not np.isfinite(value):
            raise ModelError(f"key {self.name(template)!r} is {value}, expected a finite number", self.path)
        return float(value)

    def integers(self, template: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self._lookup(template, default)
        if value is _MISSING:
            return default
        items = _as_sequence(value)
        if items is None or not all(
            isinstance(item, numbers.Integral) and not isinstance(item, (bool, np.bool_)) for item in items
        ):
            raise ModelError(f"key {self.name(template)!r} is {value!r}, expected an array of integers", self.path)
        return tuple(int(item) for item in items)

    def booleans(self, template: str) -> tuple[bool, ...] | None:
        """Return the key's array of booleans, or None if the key is absent."""
        value = self._lookup(template, None)
        if value is _MISSING:
            return None
        items = _as_sequence(value)
        if items is None or not all(isinstance(item, (bool, np.bool_)) for item in items):
            raise ModelError(f"key {self.name(template)!r} is {value!r}, expected an array of booleans", self.path)
        return tuple(bool(item) for item in items)


def _as_sequence(value: object) -> Sequence[object] | None:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim == 1 else None
    if isinstance(value, (list, tuple)):
        return value
    return None
