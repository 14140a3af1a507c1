"""The GGUF file's own vocabulary as a Hugging Face ``tokenizers.Tokenizer``.

Byte-level BPE vocabularies (``tokenizer.ggml.model`` = ``gpt2``) are rebuilt from ``tokenizer.ggml.tokens``
and ``tokenizer.ggml.merges``. The split regex comes from ``tokenizer.ggml.pre``; the patterns below are the
ones that llama.cpp's ``src/llama-vocab.cpp`` and the models' ``tokenizer.json`` files use for each name.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from gguftools.container import GGUFModel
from gguftools.errors import UnsupportedError

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


def load_tokenizer(model: GGUFModel) -> Tokenizer:
    """Build the tokenizer that the file's vocabulary describes; raise UnsupportedError for other kinds."""
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
    tokens = model.get("tokenizer.ggml.tokens")
    merges = model.get("tokenizer.ggml.merges")
    if tokens is None or merges is None:
        missing = "tokenizer.ggml.tokens" if tokens is None else "tokenizer.ggml.merges"
        raise UnsupportedError(f"{missing} is missing, so the text cannot be tokenized", model.path)

    vocab = {token: index for index, token in enumerate(tokens)}
    merge_pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merge_pairs, ignore_merges=False))
    splits = [
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False) for pattern in SPLIT_PATTERNS[pre]
    ]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()

    token_types = model.get("tokenizer.ggml.token_type")
    if token_types is not None:
        types = token_types.to_numpy()
        special = [
            AddedToken(tokens[index], special=True, normalized=False)
            for index in ((types == CONTROL_TOKEN) | (types == USER_DEFINED_TOKEN)).nonzero()[0]
        ]
        tokenizer.add_special_tokens(special)
    return tokenizer
