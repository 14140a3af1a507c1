"""Architecture schemas: load ``schemas/{arch}.json`` and check a model's metadata and MTP blocks against it.

A schema is a JSON Schema (draft 2020-12) over a small document that ``model_document`` builds from the
file, not over the file itself:

    {"metadata": {"qwen35.block_count": {"type": "UINT32", "value": 5},
                  "tokenizer.ggml.tokens": {"type": "ARRAY", "item_type": "STRING", "count": 1536}, ...},
     "mtp_blocks": [{"index": 4,
                     "nextn": {"eh_proj": {"type": "F32", "shape": [128, 256]}, ...},
                     "layer": {"attn_norm.weight": {"type": "F32", "shape": [128]}, ...}}]}

Types are GGUF type names because llama.cpp rejects a key whose type differs from the one it reads
(``llama-model-loader.cpp``, "key %s has wrong type"). Each schema also has an ``x-gguftools`` object that
JSON Schema ignores and ``gguftools.validate`` reads: the family's expected ``nextn_hidden_source`` with its
source, how the family stores RMSNorm weights, and the MTP tensor shapes in terms of ``n_embd`` and
``n_vocab``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

import jsonschema

from gguftools.container import ArrayValue, GGUFModel
from gguftools.container.types import ValueType, value_type_name
from gguftools.errors import SchemaError
from gguftools.mtp import MTPInfo

SCHEMA_SUFFIX = ".json"
# Arrays no longer than this keep their values in the document, so that a schema can constrain them.
ARRAY_VALUES_MAX = 64


@dataclasses.dataclass
class Schema:
    """One architecture's schema file, parsed and checked."""

    architecture: str
    path: str
    document: dict[str, Any]

    @property
    def extra(self) -> dict[str, Any]:
        """The ``x-gguftools`` object: expected hidden source, norm-weight convention, MTP shapes."""
        extra = self.document.get("x-gguftools")
        return extra if isinstance(extra, dict) else {}


@dataclasses.dataclass(frozen=True)
class SchemaViolation:
    """One schema finding before it gets a level: the rule id and the message."""

    rule: str
    message: str


def default_schema_dir() -> Path:
    """Return the folder of the schemas shipped with gguftools (``gguftools/schemas`` in the wheel)."""
    packaged = importlib.resources.files("gguftools") / "schemas"
    return Path(str(packaged))


def available_architectures(schema_dir: str | os.PathLike[str] | None = None) -> list[str]:
    folder = Path(schema_dir) if schema_dir is not None else default_schema_dir()
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob(f"*{SCHEMA_SUFFIX}"))


def load_schema(architecture: str, schema_dir: str | os.PathLike[str] | None = None) -> Schema | None:
    """Load ``{architecture}.json`` from ``schema_dir`` (default: the shipped schemas); None if absent.

    Raises ``SchemaError`` when the folder does not exist or the file is not a valid JSON Schema.
    """
    folder = Path(schema_dir) if schema_dir is not None else default_schema_dir()
    if not folder.is_dir():
        raise SchemaError("schema folder not found", str(folder))
    if not _is_plain_name(architecture):
        return None
    path = folder / f"{architecture}{SCHEMA_SUFFIX}"
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SchemaError(f"cannot read the schema: {error}", str(path)) from None
    if not isinstance(document, dict):
        raise SchemaError("the schema is not a JSON object", str(path))
    try:
        jsonschema.Draft202012Validator.check_schema(document)
    except jsonschema.SchemaError as error:
        location = "/".join(map(str, error.absolute_path)) or "(top level)"
        raise SchemaError(f"not a valid JSON Schema at {location}: {error.message}", str(path)) from None
    return Schema(architecture, str(path), document)


def _is_plain_name(architecture: str) -> bool:
    """Reject architecture names that would leave the schema folder or that no file can have."""
    return bool(architecture) and architecture.isprintable() and not any(c in architecture for c in "/\\\0") and (
        architecture not in (".", "..")
    )


# -- the document a schema validates ------------------------------------------------------------------


def model_document(model: GGUFModel, info: MTPInfo) -> dict[str, Any]:
    """Build the JSON document that schemas validate (see the module docstring)."""
    metadata = {}
    for dict_key, field in model.metadata.items():
        if dict_key != field.key:
            continue  # the second copy of a duplicate key; the reader reports it
        metadata[field.key] = _field_document(field.value_type, field.value)

    blocks = []
    for block in info.blocks:
        prefix = f"blk.{block.index}."
        nextn_prefix = f"{prefix}nextn."
        nextn = {}
        layer = {}
        for name, tensor in model.tensors.items():
            if not name.startswith(prefix):
                continue
            entry = {"type": tensor.type_name, "shape": list(tensor.shape)}
            if name.startswith(nextn_prefix) and name.endswith(".weight"):
                nextn[name[len(nextn_prefix) : -len(".weight")]] = entry
            else:
                layer[name[len(prefix) :]] = entry
        blocks.append({"index": block.index, "nextn": nextn, "layer": layer})
    return {"metadata": metadata, "mtp_blocks": blocks}


def _field_document(value_type: int, value: Any) -> dict[str, Any]:
    if isinstance(value, ArrayValue):
        entry: dict[str, Any] = {
            "type": "ARRAY",
            "item_type": value_type_name(value.item_type),
            "count": value.count,
        }
        if value.count <= ARRAY_VALUES_MAX and value.item_type != ValueType.ARRAY:  # nested: count only
            entry["value"] = [_json_value(item) for item in value]
        return entry
    return {"type": value_type_name(value_type), "value": _json_value(value)}


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"invalid_utf8": value.hex()}
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")
    return value


# -- schema errors turned into findings ---------------------------------------------------------------


def check_document(schema: Schema, document: dict[str, Any]) -> list[SchemaViolation]:
    """Validate ``document`` and turn each JSON Schema error into a rule id and a message."""
    validator = jsonschema.Draft202012Validator(schema.document)
    violations: list[SchemaViolation] = []
    seen: set[tuple[str, str]] = set()
    errors = sorted(validator.iter_errors(document), key=lambda error: [str(p) for p in error.absolute_path])
    for error in errors:
        for violation in _violations(error, document):
            if (violation.rule, violation.message) not in seen:
                seen.add((violation.rule, violation.message))
                violations.append(violation)
    return violations


def _violations(error: jsonschema.ValidationError, document: dict[str, Any]) -> list[SchemaViolation]:
    path = list(error.absolute_path)
    if path[:1] == ["metadata"]:
        return _metadata_violations(error, path[1:], document["metadata"])
    if path[:1] == ["mtp_blocks"] and len(path) >= 3:
        block = document["mtp_blocks"][path[1]]
        return _block_violations(error, block["index"], path[2])
    return [SchemaViolation("schema", f"{_location(path)}: {error.message}")]


def _metadata_violations(
    error: jsonschema.ValidationError, path: list[Any], metadata: dict[str, Any]
) -> list[SchemaViolation]:
    if not path:
        if error.validator == "required":
            missing = [key for key in error.validator_value if key not in metadata]
            return [SchemaViolation("key-missing", f"key {key} is missing") for key in missing]
        return [SchemaViolation("schema", f"metadata: {error.message}")]

    key = path[0]
    entry = metadata.get(key, {})
    label = _type_label(entry)
    if len(path) >= 2 and path[1] in ("type", "item_type"):
        return [SchemaViolation("key-type", f"key {key} has type {label}, expected {_expected(error)}")]
    if len(path) >= 2 and path[1] == "value":
        value_text = _value_text(entry.get("value"))
        return [SchemaViolation("key-value", f"key {key} is {value_text}, expected {_expected(error)}")]
    if len(path) >= 2 and path[1] == "count":
        return [SchemaViolation("key-value", f"key {key} has {entry.get('count')} items, expected {_expected(error)}")]
    if error.validator in ("anyOf", "oneOf"):
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        expected = description or "a value matching the schema"
        rule = "key-type" if _only_type_errors(error) else "key-value"
        value_text = label if rule == "key-type" else _value_text(entry.get("value"))
        return [SchemaViolation(rule, f"key {key} is {value_text}, expected {expected}")]
    return [SchemaViolation("key-value", f"key {key}: {error.message}")]


def _block_violations(error: jsonschema.ValidationError, index: int, part: str) -> list[SchemaViolation]:
    if part == "nextn" and error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [
            SchemaViolation("mtp-partial", f"MTP block {index} lacks the required tensor blk.{index}.nextn.{name}.weight")
            for name in missing
        ]
    if part == "nextn" and error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = [name for name in error.instance if name not in allowed]
        return [
            SchemaViolation(
                "mtp-unknown-tensor",
                f"tensor blk.{index}.nextn.{name}.weight is not an MTP tensor this architecture uses",
            )
            for name in extra
        ]
    if part == "layer" and error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [
            SchemaViolation("mtp-partial", f"MTP block {index} lacks the decoder tensor blk.{index}.{name}")
            for name in missing
        ]
    if part == "layer" and error.validator in ("anyOf", "oneOf"):
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        return [SchemaViolation("mtp-partial", f"MTP block {index} lacks {description or error.message}")]
    return [SchemaViolation("schema", f"MTP block {index}, {part}: {error.message}")]


def _only_type_errors(error: jsonschema.ValidationError) -> bool:
    return bool(error.context) and all(
        sub.relative_path and sub.relative_path[0] in ("type", "item_type") for sub in error.context
    )


def _expected(error: jsonschema.ValidationError) -> str:
    value = error.validator_value
    if error.validator == "const":
        return json.dumps(value)
    if error.validator == "enum":
        return "one of " + ", ".join(json.dumps(item) for item in value)
    if error.validator == "minimum":
        return f"at least {value}"
    if error.validator == "exclusiveMinimum":
        return f"more than {value}"
    if error.validator == "maximum":
        return f"at most {value}"
    if error.validator == "type":
        return f"a JSON {value}" if isinstance(value, str) else f"one of the JSON types {value}"
    return f"a value that satisfies {error.validator} {json.dumps(value)}"


def _type_label(entry: dict[str, Any]) -> str:
    if entry.get("type") == "ARRAY":
        return f"[{entry.get('item_type')}]"
    return str(entry.get("type"))


def _value_text(value: Any) -> str:
    if isinstance(value, dict) and "invalid_utf8" in value:
        return "a string that is not valid UTF-8"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value[:8])) + (", ...]" if len(value) > 8 else "]")
    return json.dumps(value)


def _location(path: list[Any]) -> str:
    return "/".join(map(str, path)) or "(document)"
