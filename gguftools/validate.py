"""``validate``: check a GGUF model against its architecture's schema and the rules a schema cannot express.

Every finding has a level (error, warning, info) and a rule id from ``RULES``. The schema covers the
presence and GGUF type of keys, their allowed values, and which tensors an MTP block holds
(``gguftools.schema``). This module adds the checks that need arithmetic or the tensor data. It compares
block numbers with ``block_count`` and ``nextn_predict_layers``, MTP tensor shapes with ``embedding_length``
and the vocabulary, and the hidden-source key with the family's expected value. It also checks norm-weight
statistics and the pre-tokenizer name, and turns the reader's findings about the container into findings.
"""

from __future__ import annotations

import dataclasses
import os
import re
import statistics
from collections.abc import Iterable
from typing import Any

from gguftools.container import ArrayValue, GGUFModel, open_gguf
from gguftools.errors import GGUFToolsError
from gguftools.mtp import (
    BLOCK_TENSOR,
    HIDDEN_SOURCES,
    NEXTN_HIDDEN_SOURCE,
    NEXTN_PREDICT_LAYERS,
    Layout,
    MTPInfo,
    describe_mtp,
)
from gguftools.schema import Schema, available_architectures, check_document, load_schema, model_document
from gguftools.tokenize import TokenizerDataError, read_bpe_vocabulary

ERROR, WARNING, INFO = "error", "warning", "info"
LEVELS = (ERROR, WARNING, INFO)

NEXTN_HIDDEN_SOURCE_EVIDENCE = "{arch}.nextn_hidden_source_evidence"

# Rule id -> (level, what it checks). The README lists the same table.
RULES: dict[str, tuple[str, str]] = {
    # the container, reported by the reader
    "gguf-version-1": (WARNING, "GGUF version 1, which llama.cpp no longer loads"),
    "gguf-duplicate-key": (ERROR, "a key that occurs twice"),
    "gguf-empty-key": (WARNING, "a key with an empty name"),
    "gguf-empty-tensor": (ERROR, "a tensor with an empty name"),
    "gguf-invalid-utf8": (WARNING, "a key or tensor name that is not valid UTF-8"),
    "gguf-alignment": (ERROR, "general.alignment of the wrong type or not a power of two"),
    "gguf-duplicate-tensor": (ERROR, "a tensor name that occurs twice"),
    "gguf-unknown-tensor-type": (ERROR, "a tensor type id that ggml does not define"),
    "gguf-tensor-blocks": (ERROR, "a quantized tensor whose rows are not whole blocks"),
    "gguf-tensor-alignment": (ERROR, "tensor data that does not start on the alignment"),
    "gguf-truncated": (ERROR, "a file cut short: tensor infos or tensor data past the end"),
    "split-missing-shard": (ERROR, "a shard of a split set that does not exist"),
    "split-count-mismatch": (ERROR, "split.count that differs from the shard count in the file name"),
    "split-number-mismatch": (ERROR, "split.no that differs from the shard number in the file name"),
    "split-duplicate-tensor": (ERROR, "a tensor stored in two shards"),
    "split-unnamed-shard": (WARNING, "a shard (split.count > 1) not named -0000N-of-0000M.gguf"),
    # keys, from the schema
    "arch-missing": (ERROR, "general.architecture missing or not a string"),
    "schema-missing": (WARNING, "no schema for the architecture, so only the generic checks ran"),
    "schema": (ERROR, "any other schema violation"),
    "key-missing": (ERROR, "a key the architecture's forward pass needs is missing"),
    "key-type": (ERROR, "a key with a GGUF type other than the one llama.cpp reads"),
    "key-value": (ERROR, "a key whose value is outside the allowed values"),
    # MTP blocks
    "nextn-stale-key": (ERROR, "nextn_predict_layers > 0 but no blk.N.nextn.* tensors"),
    "nextn-key-missing": (ERROR, "blk.N.nextn.* tensors but nextn_predict_layers missing or 0"),
    "block-count": (ERROR, "nextn_predict_layers or a block number that does not fit block_count"),
    "mtp-block-position": (ERROR, "nextn tensors in a block other than the last nextn_predict_layers"),
    "mtp-partial": (ERROR, "an MTP block without a tensor it needs"),
    "mtp-unknown-tensor": (WARNING, "a blk.N.nextn.* tensor the architecture does not use"),
    "mtp-shape": (ERROR, "an MTP tensor whose shape does not fit the model"),
    "mtp-only-file": (INFO, "an MTP-only companion file (no trunk tensors)"),
    # the hidden-source key
    "hidden-source-missing": (WARNING, "MTP tensors but no {arch}.nextn_hidden_source"),
    "hidden-source-differs": (WARNING, "{arch}.nextn_hidden_source differs from the family's expected value"),
    "hidden-source-evidence-missing": (INFO, "{arch}.nextn_hidden_source set without recorded evidence"),
    "hidden-source-without-mtp": (INFO, "{arch}.nextn_hidden_source in a file without MTP tensors"),
    # tensor statistics
    "norm-shifted-twice": (WARNING, "norm weights with mean near 2 where the family stores 1 + w"),
    "norm-not-shifted": (WARNING, "norm weights with mean near 0 where the family stores 1 + w"),
    "norm-unreadable": (INFO, "a norm weight that could not be dequantized, so its statistics are unknown"),
    # tokenizer
    "tokenizer-pre-missing": (WARNING, "a BPE vocabulary without tokenizer.ggml.pre"),
    "tokenizer-pre-unknown": (WARNING, "a tokenizer.ggml.pre value llama.cpp does not know"),
    "tokenizer-data": (
        ERROR,
        "BPE tokens or merges of the wrong type, not valid UTF-8, or a merge without a space or of unknown tokens",
    ),
}

# Pre-tokenizer names that llama.cpp accepts for BPE vocabularies (src/llama-vocab.cpp, llama_vocab::impl::load,
# in the llama.cpp vendored by llama-cpp-python 0.3.36); any other name makes llama.cpp refuse the file.
KNOWN_PRE_TOKENIZERS = frozenset(
    """
    default minicpm5 llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano deepseek-llm
    deepseek-coder deepseek-v3 spark2_5 youtu falcon mpt starcoder gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es
    jina-v2-de a.x-4.0 mellum modern-bert jais-2 gemma4 granite-embed-multi-311m sarvam-moe jina-v1-en jina-v2-code
    roberta-bpe whitespace refact command-r qwen2 deepseek-r1-qwen kormo f2llmv2 qwen35 stablelm2 olmo dbrx
    smaug-bpe poro-chat chatglm-bpe glm4 glm5 viking jais tekken smollm codeshell bloom gpt3-finnish exaone
    exaone4 exaone-moe chameleon minerva-7b megrez gpt-4o llama4 kanana2 talkie granite-embed-multi-97m tiny_aya
    cohere2moe superbpe trillion granite-docling bailingmoe bailingmoe2 llada-moe seed-coder hunyuan hunyuan-dense
    hy_v4 joyai-llm kimi-k2 ufakzeka grok-2 afmoe laguna minimax-m2 solar-open mellum2
    """.split()
)
# tokenizer.ggml.model values that llama.cpp loads as BPE, the only kind that reads tokenizer.ggml.pre.
BPE_TOKENIZER_MODELS = ("gpt2", "hybriddna", "whitespace")

# Norm-weight statistics, for families that store RMSNorm weights as 1 + w. The median over a group of norm
# vectors of each vector's mean is compared with these bounds. A trained model's effective scales sit near 1;
# near 0 means the +1 was never added, near 2 that it was added twice.
# NOTE: the bounds are judgement, not measured on a corpus of published models; hence warnings, not errors.
NOT_SHIFTED_BELOW = 0.4
SHIFTED_TWICE_RANGE = (1.6, 2.6)
# A norm weight is a vector of embedding_length or head-dim entries; larger 1-D tensors are not norms.
NORM_ELEMENTS_MAX = 1 << 20


@dataclasses.dataclass(frozen=True)
class Finding:
    """One line of the validate report."""

    level: str
    rule: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"level": self.level, "rule": self.rule, "message": self.message}


@dataclasses.dataclass
class ValidationReport:
    """The findings for one model, in the order errors, warnings, infos."""

    path: str
    architecture: str | None
    schema_path: str | None
    findings: list[Finding]

    def count(self, level: str) -> int:
        return sum(1 for finding in self.findings if finding.level == level)

    @property
    def has_errors(self) -> bool:
        return self.count(ERROR) > 0

    def exit_code(self, strict: bool = False) -> int:
        """Return 1 when there is an error (or, with ``strict``, a warning), else 0."""
        if self.has_errors or (strict and self.count(WARNING) > 0):
            return 1
        return 0


class _Collector:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, rule: str, message: str, level: str | None = None) -> None:
        default_level = RULES.get(rule, (ERROR, ""))[0]
        self.findings.append(Finding(level or default_level, rule, message))


def validate_file(path: str | os.PathLike[str], schema_dir: str | os.PathLike[str] | None = None) -> ValidationReport:
    """Open ``path`` (any shard opens a split set) and validate it.

    Raises ``GGUFFormatError``/``UnsupportedError`` when the file cannot be read at all, and ``SchemaError``
    when the schema exists but is broken.
    """
    with open_gguf(path) as model:
        return validate_model(model, schema_dir)


def validate_model(model: GGUFModel, schema_dir: str | os.PathLike[str] | None = None) -> ValidationReport:
    """Run the schema and every Python check on an open model."""
    found = _Collector()
    for problem in model.problems:
        found.add(getattr(problem, "rule", "gguf"), str(problem))

    info = describe_mtp(model)
    arch = model.get("general.architecture")
    schema: Schema | None = None
    if not isinstance(arch, str):
        found.add("arch-missing", "key general.architecture is missing or not a string, so no schema applies")
        arch = None
    else:
        schema = load_schema(arch, schema_dir)
        if schema is None:
            known = ", ".join(available_architectures(schema_dir)) or "none"
            found.add(
                "schema-missing",
                f"no schema for architecture {arch!r} (schemas exist for: {known}); "
                f"add {arch}.json to the schema folder to check its keys and MTP tensors",
            )
        else:
            for violation in check_document(schema, model_document(model, info)):
                if violation.rule == "mtp-partial" and info.layout is Layout.UNKNOWN:
                    continue  # because the tensor may lie after the cut, which gguf-truncated reports
                found.add(violation.rule, violation.message)

    if arch is not None:
        _check_mtp_blocks(model, info, arch, schema, found)
        _check_shapes(model, info, arch, schema, found)
        _check_hidden_source(model, info, arch, schema, found)
        _check_norms(model, info, schema, found)
    _check_tokenizer(model, found)

    order = {level: rank for rank, level in enumerate(LEVELS)}
    findings = sorted(found.findings, key=lambda finding: order.get(finding.level, 0))
    return ValidationReport(model.path, arch, schema.path if schema else None, findings)


# -- MTP block structure ------------------------------------------------------------------------------


def _check_mtp_blocks(model: GGUFModel, info: MTPInfo, arch: str, schema: Schema | None, found: _Collector) -> None:
    key = NEXTN_PREDICT_LAYERS.format(arch=arch)
    nextn = info.nextn_predict_layers
    block_count = info.block_count

    if info.layout is Layout.STALE_KEY:
        found.add(
            "nextn-stale-key",
            f"key {key} is {nextn} but the file has no blk.N.nextn.* tensors; set it to 0 or add the MTP block",
        )
    if info.blocks and not nextn:
        state = "missing" if nextn is None else "0"
        found.add(
            "nextn-key-missing",
            f"key {key} is {state} but block(s) {_join(info.block_indices)} hold nextn tensors, "
            f"so llama.cpp will not load the MTP head",
        )
    if info.layout is Layout.MTP_ONLY:
        found.add("mtp-only-file", "the file holds MTP blocks but no trunk (no blk.0.attn_norm.weight)")

    if block_count is not None and nextn:
        if nextn >= block_count:
            found.add(
                "block-count",
                f"key {key} is {nextn}, which leaves no trunk blocks out of block_count {block_count}",
            )
        elif info.expected_blocks:
            expected = set(info.expected_blocks)
            for block in info.blocks:
                if block.index not in expected:
                    found.add(
                        "mtp-block-position",
                        f"block {block.index} holds nextn tensors, but with block_count {block_count} and "
                        f"{key} {nextn} the MTP blocks are {_join(info.expected_blocks)}",
                    )
            present = set(info.block_indices)
            if info.blocks and info.layout is not Layout.UNKNOWN:
                for index in info.expected_blocks:
                    if index not in present:
                        found.add(
                            "mtp-partial",
                            f"MTP block {index} is announced by {key} but holds no blk.{index}.nextn.* tensors",
                        )

    if block_count is not None:
        beyond = sorted(
            {index for index in _block_indices(model.tensors) if index >= block_count}
        )
        if beyond:
            found.add(
                "block-count",
                f"tensors of block(s) {_join(beyond)} exist, but block_count is {block_count} "
                f"(blocks 0 to {block_count - 1})",
            )

    # Without a schema, the required tensors come from llama.cpp's loaders (the same three nextn tensors in
    # every MTP family). With one, the schema reports them, so they are not reported twice. In a file cut short
    # inside its tensor infos, the missing tensors may lie after the cut, which gguf-truncated reports.
    if schema is None and info.layout is not Layout.UNKNOWN:
        for block in info.blocks:
            if block.layer_tensors == 0:
                found.add(
                    "mtp-partial",
                    f"MTP block {block.index} has no decoder layer tensors (blk.{block.index}.attn_*, ffn_*)",
                )
            for name in block.missing_required:
                found.add(
                    "mtp-partial",
                    f"MTP block {block.index} lacks the required tensor blk.{block.index}.nextn.{name}.weight",
                )


def _block_indices(names: Iterable[str]) -> set[int]:
    indices = set()
    for name in names:
        match = BLOCK_TENSOR.match(name)
        if match:
            indices.add(int(match[1]))
    return indices


# -- shapes -------------------------------------------------------------------------------------------


DEFAULT_NEXTN_SHAPES = {
    "eh_proj": ["n_embd", "2*n_embd"],
    "enorm": ["n_embd"],
    "hnorm": ["n_embd"],
    "shared_head_norm": ["n_embd"],
    "embed_tokens": ["n_vocab", "n_embd"],
    "shared_head_head": ["n_vocab", "n_embd"],
}
_SHAPE_TERM = re.compile(r"^\s*(?:(\d+)\s*\*\s*)?([a-z_]+|\d+)\s*$")


def _check_shapes(model: GGUFModel, info: MTPInfo, arch: str, schema: Schema | None, found: _Collector) -> None:
    if not info.blocks:
        return
    sizes = _model_sizes(model, arch)
    shapes = DEFAULT_NEXTN_SHAPES
    if schema is not None and isinstance(schema.extra.get("nextn_shapes"), dict):
        shapes = {name: dims for name, dims in schema.extra["nextn_shapes"].items() if isinstance(dims, list)}

    for block in info.blocks:
        for name in block.found:
            tensor_name = f"blk.{block.index}.nextn.{name}.weight"
            tensor = model.tensors.get(tensor_name)
            dims = shapes.get(name)
            if tensor is None or dims is None:
                continue
            expected = _evaluate_shape(dims, sizes)
            if expected is None:
                continue
            if list(tensor.shape) != expected:
                found.add(
                    "mtp-shape",
                    f"tensor {tensor_name} has shape {list(tensor.shape)}, expected {expected} "
                    f"({' x '.join(map(str, dims))}; {_sizes_text(sizes)})",
                )
        _check_layer_shapes(model, info, block.index, found)


def _check_layer_shapes(model: GGUFModel, info: MTPInfo, index: int, found: _Collector) -> None:
    """Compare the MTP block's decoder tensors with the same-named tensors of the trunk's blocks.

    The MTP block is one decoder layer of the architecture's own kind, so a tensor that some trunk block
    also has must have one of the shapes the trunk uses for it.
    """
    mtp_indices = set(info.block_indices)
    prefix = f"blk.{index}."
    trunk_shapes: dict[str, set[tuple[int, ...]]] = {}
    for name, tensor in model.tensors.items():
        match = BLOCK_TENSOR.match(name)
        if not match or int(match[1]) in mtp_indices:
            continue
        suffix = name[match.end() :]
        trunk_shapes.setdefault(suffix, set()).add(tuple(tensor.shape))
    for name, tensor in model.tensors.items():
        if not name.startswith(prefix) or ".nextn." in name:
            continue
        suffix = name[len(prefix) :]
        shapes = trunk_shapes.get(suffix)
        if shapes and tuple(tensor.shape) not in shapes:
            known = " or ".join(str(list(shape)) for shape in sorted(shapes))
            found.add("mtp-shape", f"tensor {name} has shape {list(tensor.shape)}, but the trunk's {suffix} is {known}")


def _model_sizes(model: GGUFModel, arch: str) -> dict[str, int]:
    sizes = {}
    n_embd = model.get(f"{arch}.embedding_length")
    if isinstance(n_embd, int) and not isinstance(n_embd, bool) and n_embd > 0:
        sizes["n_embd"] = n_embd
    tokens = model.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayValue) and tokens.count > 0:
        sizes["n_vocab"] = tokens.count
    else:
        embedding = model.tensors.get("token_embd.weight")
        if embedding is not None and len(embedding.shape) == 2:
            sizes["n_vocab"] = embedding.shape[0]
    return sizes


def _evaluate_shape(dims: list[Any], sizes: dict[str, int]) -> list[int] | None:
    """Turn ``["n_vocab", "2*n_embd"]`` into numbers; None when a size is unknown or a term is malformed."""
    result = []
    for dim in dims:
        if isinstance(dim, int) and not isinstance(dim, bool):
            result.append(dim)
            continue
        match = _SHAPE_TERM.match(dim) if isinstance(dim, str) else None
        if match is None:
            return None
        factor = int(match[1]) if match[1] else 1
        term = match[2]
        if term.isdigit():
            value = int(term)
        elif term in sizes:
            value = sizes[term]
        else:
            return None
        result.append(factor * value)
    return result


def _sizes_text(sizes: dict[str, int]) -> str:
    return ", ".join(f"{name} = {value}" for name, value in sizes.items())


# -- the hidden-source key ----------------------------------------------------------------------------


def _check_hidden_source(
    model: GGUFModel, info: MTPInfo, arch: str, schema: Schema | None, found: _Collector
) -> None:
    key = NEXTN_HIDDEN_SOURCE.format(arch=arch)
    evidence_key = NEXTN_HIDDEN_SOURCE_EVIDENCE.format(arch=arch)
    value = info.hidden_source
    evidence = model.get(evidence_key)
    evidence_text = evidence if isinstance(evidence, str) and evidence.strip() else None

    family = schema.extra.get("hidden_source") if schema is not None else None
    family = family if isinstance(family, dict) else {}
    expected = family.get("expected") if family.get("expected") in HIDDEN_SOURCES else None
    family_source = family.get("source") if isinstance(family.get("source"), str) else None
    disputed = family.get("disputed") is True

    if value is None:
        if info.blocks:
            hint = (
                f" The family's expected value is {expected}" + (f" ({family_source})" if family_source else "") + "."
                if expected
                else ""
            )
            found.add(
                "hidden-source-missing",
                f"key {key} is not set, so engines must guess which hidden state feeds the MTP head.{hint} "
                f"Measure it with gguftools verify and record it with gguftools set-mtp-source",
            )
        return

    if value not in HIDDEN_SOURCES:
        if schema is None:  # with a schema, key-value already reports it
            found.add("key-value", f"key {key} is {value!r}, expected one of {', '.join(HIDDEN_SOURCES)}")
        return

    if not info.blocks and info.layout is not Layout.UNKNOWN:
        found.add("hidden-source-without-mtp", f"key {key} is {value}, but the file has no MTP tensors")
    if expected is not None and value != expected:
        evidence_part = (
            f"; evidence recorded in {evidence_key}: {evidence_text!r}"
            if evidence_text
            else f"; no evidence recorded ({evidence_key} is not set)"
        )
        dispute_part = " (the family's value is disputed)" if disputed else ""
        source_part = f" ({family_source})" if family_source else ""
        found.add(
            "hidden-source-differs",
            f"key {key} is {value}, but the family's expected value is {expected}{dispute_part}{source_part}"
            f"{evidence_part}",
        )
    elif evidence_text is None:
        found.add(
            "hidden-source-evidence-missing",
            f"key {key} is {value}, with no measurement recorded in {evidence_key}",
        )


# -- norm-weight statistics ---------------------------------------------------------------------------


def _check_norms(model: GGUFModel, info: MTPInfo, schema: Schema | None, found: _Collector) -> None:
    if schema is None:
        return
    convention = schema.extra.get("norm_weights")
    if not isinstance(convention, dict) or convention.get("stored") != "one_plus_weight":
        return
    excluded = [name for name in convention.get("except", []) if isinstance(name, str)]

    mtp_indices = set(info.block_indices)
    groups: dict[str, list[tuple[str, float]]] = {}
    unreadable: list[str] = []
    for name, tensor in model.tensors.items():
        if not name.endswith("norm.weight") or len(tensor.shape) != 1 or tensor.n_elements == 0:
            continue
        if tensor.n_elements > NORM_ELEMENTS_MAX or any(name.endswith(f".{skip}.weight") for skip in excluded):
            continue
        match = BLOCK_TENSOR.match(name)
        group = f"MTP block {match[1]}" if match and int(match[1]) in mtp_indices else "trunk"
        try:
            values = model.dequantize(name)
        except GGUFToolsError:
            unreadable.append(name)
            continue
        mean = float(values.astype("float64").mean())
        if mean != mean:  # NaN: a damaged tensor, not a convention question
            unreadable.append(name)
            continue
        groups.setdefault(group, []).append((name, mean))

    if unreadable:
        found.add(
            "norm-unreadable",
            f"{len(unreadable)} norm weight(s) could not be read or hold NaN, e.g. {unreadable[0]}; "
            f"their statistics were skipped",
        )
    low, high = SHIFTED_TWICE_RANGE
    for group, means in groups.items():
        median = statistics.median(mean for _, mean in means)
        examples = ", ".join(f"{name} {mean:.2f}" for name, mean in means[:3])
        if low <= median <= high:
            found.add(
                "norm-shifted-twice",
                f"{group}: the norm weights have a median mean of {median:.2f} over {len(means)} tensors "
                f"({examples}); this family stores 1 + w, so a mean near 2 suggests the +1 was applied twice",
            )
        elif abs(median) < NOT_SHIFTED_BELOW:
            found.add(
                "norm-not-shifted",
                f"{group}: the norm weights have a median mean of {median:.2f} over {len(means)} tensors "
                f"({examples}); this family stores 1 + w, so a mean near 0 suggests the +1 was never applied",
            )


# -- tokenizer ----------------------------------------------------------------------------------------


def _check_tokenizer(model: GGUFModel, found: _Collector) -> None:
    tokenizer_model = model.get("tokenizer.ggml.model")
    if tokenizer_model not in BPE_TOKENIZER_MODELS:
        return
    pre = model.get("tokenizer.ggml.pre")
    if pre is None:
        found.add(
            "tokenizer-pre-missing",
            f"key tokenizer.ggml.pre is missing for a BPE vocabulary (tokenizer.ggml.model {tokenizer_model}); "
            f"llama.cpp then uses its default pre-tokenizer and warns that quality is degraded",
        )
    elif not isinstance(pre, str) or pre not in KNOWN_PRE_TOKENIZERS:
        found.add(
            "tokenizer-pre-unknown",
            f"key tokenizer.ggml.pre is {pre!r}, which the llama.cpp vendored by llama-cpp-python 0.3.36 does "
            f"not know and would refuse (newer llama.cpp releases may know it)",
        )
    _check_vocabulary(model, found)


def _check_vocabulary(model: GGUFModel, found: _Collector) -> None:
    """Report the first element of tokenizer.ggml.tokens or tokenizer.ggml.merges that breaks the vocabulary."""
    if model.get("tokenizer.ggml.tokens") is None or model.get("tokenizer.ggml.merges") is None:
        return  # the schema reports a missing key, and this rule checks only the content
    try:
        read_bpe_vocabulary(model)
    except TokenizerDataError as error:
        # A schema that types the key has already reported the wrong type as key-type.
        reported = any(
            finding.rule == "key-type" and finding.message.startswith(f"key {error.key} ")
            for finding in found.findings
        )
        if not (error.wrong_type and reported):
            found.add("tokenizer-data", f"key {error.message}")


def _join(indices: Iterable[int]) -> str:
    return ", ".join(map(str, indices))


# -- output -------------------------------------------------------------------------------------------


def report_json(report: ValidationReport) -> dict[str, Any]:
    """Build the ``validate --json`` object: file, architecture, schema, counts per level and the findings."""
    from gguftools.render import json_safe

    return {
        "file": json_safe(report.path),
        "architecture": json_safe(report.architecture) if report.architecture is not None else None,
        "schema": report.schema_path,
        "counts": {level: report.count(level) for level in LEVELS},
        "findings": [
            {"level": finding.level, "rule": finding.rule, "message": json_safe(finding.message)}
            for finding in report.findings
        ],
    }


def report_text(report: ValidationReport) -> str:
    """Format one ``level rule-id: message`` line per finding, then a summary line."""
    from gguftools.render import printable

    lines = [f"{finding.level} {finding.rule}: {printable(finding.message)}" for finding in report.findings]
    counts = ", ".join(f"{report.count(level)} {level}{'s' if report.count(level) != 1 else ''}" for level in LEVELS)
    lines.append(f"{printable(report.path)}: {counts}")
    return "\n".join(lines)
