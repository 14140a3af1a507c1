"""The GGUF file's own vocabulary as a Hugging Face ``tokenizers.Tokenizer``.

Byte-level BPE vocabularies (``tokenizer.ggml.model`` = ``gpt2``) are rebuilt from ``tokenizer.ggml.tokens``
and ``tokenizer.ggml.merges``. The split regex comes from ``tokenizer.ggml.pre``; the patterns below are the
ones that llama.cpp's ``src/llama-vocab.cpp`` and the models' ``tokenizer.json`` files use for each name.
"""

from __future__ import annotations

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from gguftools.container import ArrayValue, GGUFModel, ValueType
from gguftools.errors import ModelError, UnsupportedError

_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN35 = (
    _CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DEEPSEEK3 = [
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
]
_CHATGLM4 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

# tokenizer.ggml.pre value -> split patterns, applied in order
SPLIT_PATTERNS: dict[str, list[str]] = {
    "gpt2": [_GPT2],
    "llama-bpe": [_LLAMA3],
    "llama3": [_LLAMA3],
    "qwen2": [_QWEN2],
    "deepseek-r1-qwen": [_QWEN2],
    "qwen35": [_QWEN35],
    "deepseek-v3": _DEEPSEEK3,
    "glm4": [_CHATGLM4],
    "chatglm-bpe": [_CHATGLM4],
}

CONTROL_TOKEN = 3
USER_DEFINED_TOKEN = 4

TOKENS_KEY = "tokenizer.ggml.tokens"
MERGES_KEY = "tokenizer.ggml.merges"
TOKEN_TYPE_KEY = "tokenizer.ggml.token_type"
INTEGER_TYPES = (
    ValueType.UINT8, ValueType.INT8, ValueType.UINT16, ValueType.INT16,
    ValueType.UINT32, ValueType.INT32, ValueType.UINT64, ValueType.INT64,
)


class TokenizerDataError(ModelError):
    """Vocabulary keys whose type or content cannot form a byte-level BPE tokenizer.

    ``key`` is the key at fault. ``wrong_type`` is True when the key has the wrong GGUF type, which a schema's
    ``key-type`` rule may already report.
    """

    def __init__(self, key: str, message: str, path: str, wrong_type: bool = False) -> None:
        super().__init__(message, path)
        self.key = key
        self.wrong_type = wrong_type


def load_tokenizer(model: GGUFModel) -> Tokenizer:
    """Build the tokenizer that the file's vocabulary describes.

    Raises UnsupportedError for other kinds of vocabulary, TokenizerDataError for damaged vocabulary keys and
    ModelError when ``tokenizers`` rejects the vocabulary for another reason.
    """
    kind = model.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise UnsupportedError(
            f"tokenizer.ggml.model is {kind!r}; only byte-level BPE vocabularies ('gpt2') are supported",
            model.path,
        )
    pre = model.get("tokenizer.ggml.pre", "gpt2")
    if pre not in SPLIT_PATTERNS:
        raise UnsupportedError(
            f"tokenizer.ggml.pre is {pre!r}, which gguftools cannot tokenize; "
            f"supported: {', '.join(sorted(SPLIT_PATTERNS))}",
            model.path,
        )
    tokens, merge_pairs = read_bpe_vocabulary(model)
    vocab = {token: index for index, token in enumerate(tokens)}
    try:
        bpe = models.BPE(vocab=vocab, merges=merge_pairs, ignore_merges=False)
    except Exception as error:  # tokenizers raises a bare Exception for data it rejects
        raise ModelError(
            f"{TOKENS_KEY} and {MERGES_KEY} do not form a valid BPE vocabulary: {error}", model.path
        ) from None
    tokenizer = Tokenizer(bpe)
    splits = [
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False) for pattern in SPLIT_PATTERNS[pre]
    ]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()

    token_types = model.get(TOKEN_TYPE_KEY)
    if token_types is not None:
        types = _token_types(model, token_types, len(tokens))
        special = [
            AddedToken(tokens[index], special=True, normalized=False)
            for index in ((types == CONTROL_TOKEN) | (types == USER_DEFINED_TOKEN)).nonzero()[0]
        ]
        tokenizer.add_special_tokens(special)
    return tokenizer


def read_bpe_vocabulary(model: GGUFModel) -> tuple[list[str], list[tuple[str, str]]]:
    """Read the tokens and the merge pairs, and check that every merge joins two known tokens into a known one.

    These checks run before ``tokenizers`` sees the data, because it raises a bare ``Exception`` for a merge
    of unknown tokens and panics (``PanicException``, not an ``Exception``) when the merged token is unknown.
    Raises UnsupportedError when a key is missing and TokenizerDataError for a wrong type or a bad element.
    """
    for key in (TOKENS_KEY, MERGES_KEY):
        if model.get(key) is None:
            raise UnsupportedError(f"{key} is missing, so the text cannot be tokenized", model.path)
    tokens = _string_array(model, TOKENS_KEY)
    merges = _string_array(model, MERGES_KEY)
    known = set(tokens)

    pairs = []
    for index, merge in enumerate(merges):
        left, space, right = merge.partition(" ")
        if not space:
            raise TokenizerDataError(
                MERGES_KEY,
                f"{MERGES_KEY}[{index}] is {merge!r}, which has no space between its two tokens",
                model.path,
            )
        for part in (left, right, left + right):
            if part not in known:
                raise TokenizerDataError(
                    MERGES_KEY,
                    f"{MERGES_KEY}[{index}] is {merge!r}, but {part!r} is not a token in {TOKENS_KEY}",
                    model.path,
                )
        pairs.append((left, right))
    return tokens, pairs


def _string_array(model: GGUFModel, key: str) -> list[str]:
    """Return an array of strings as a list; raise TokenizerDataError for another type or invalid UTF-8."""
    value = model.get(key)
    if not isinstance(value, ArrayValue) or value.item_type != ValueType.STRING:
        raise TokenizerDataError(
            key,
            f"{key} has type {model.metadata[key].type_label()}, expected [STRING] (an array of strings)",
            model.path,
            wrong_type=True,
        )
    items = []
    for index in range(value.count):
        item = value[index]
        if isinstance(item, bytes):  # the reader keeps strings that are not valid UTF-8 as bytes
            raise TokenizerDataError(key, f"{key}[{index}] is not valid UTF-8: {item!r}", model.path)
        items.append(item)
    return items


def _token_types(model: GGUFModel, value: object, token_count: int) -> np.ndarray:
    """Return tokenizer.ggml.token_type as integers, one per token; raise TokenizerDataError otherwise."""
    if not isinstance(value, ArrayValue) or value.item_type not in INTEGER_TYPES:
        raise TokenizerDataError(
            TOKEN_TYPE_KEY,
            f"{TOKEN_TYPE_KEY} has type {model.metadata[TOKEN_TYPE_KEY].type_label()}, expected an integer array",
            model.path,
            wrong_type=True,
        )
    if value.count != token_count:
        raise TokenizerDataError(
            TOKEN_TYPE_KEY,
            f"{TOKEN_TYPE_KEY} has {value.count} entries but {TOKENS_KEY} has {token_count}",
            model.path,
        )
    return value.to_numpy()
