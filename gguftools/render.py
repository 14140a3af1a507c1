"""Text and JSON renderings of what the library found. Every key, name and string value printed here passes
through ``printable``, so that control characters in a file cannot move the terminal's cursor."""

from __future__ import annotations

import os
from typing import Any

from tabulate import tabulate

from gguftools.container import ArrayValue, GGUFModel, MetadataField
from gguftools.mtp import OPTIONAL_NEXTN_TENSORS, REQUIRED_NEXTN_TENSORS, MTPInfo
from gguftools.verify import Verdict

ARRAY_PREVIEW = 8
STRING_PREVIEW = 200


def printable(value: Any) -> str:
    """Escape control characters (and undecodable bytes) so that text is safe to print on one line.

    Values of other types (from a key of the wrong type) are accepted too, see ``json_safe``.
    """
    text = json_safe(value)
    out = []
    for char in text:
        code = ord(char)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, f"\\x{code:02x}"))
        else:
            out.append(char)
    return "".join(out)


def json_safe(value: Any) -> str:
    """Return text that encodes as UTF-8: each byte that is not valid UTF-8 becomes ``\\xNN``.

    Keys and tensor names that are not valid UTF-8 reach here as ``str`` with surrogate escapes (the reader
    decodes them with ``surrogateescape``), string values as ``bytes``. An array becomes a short preview and
    any other value ``str(value)``.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, ArrayValue):
        return _array_text(value, full=False)
    if not isinstance(value, str):
        value = str(value)
    try:
        return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")
    except UnicodeEncodeError:  # a surrogate that surrogateescape did not produce
        return value.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _scalar_text(value: Any, full: bool) -> str:
    if isinstance(value, (str, bytes)):
        text = printable(value)
        if not full and len(text) > STRING_PREVIEW:
            text = text[:STRING_PREVIEW] + f"... ({len(text) - STRING_PREVIEW} more characters)"
        return repr(text) if isinstance(value, str) else f"bytes {text!r}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _array_text(array: ArrayValue, full: bool) -> str:
    shown = array.count if full else min(array.count, ARRAY_PREVIEW)
    items = [_array_item_text(array[index], full) for index in range(shown)]
    rest = f", ... {array.count - shown} more items" if shown < array.count else ""
    return "[" + ", ".join(items) + rest + "]"


def _array_item_text(item: Any, full: bool) -> str:
    if isinstance(item, ArrayValue):
        return _array_text(item, full)
    return _scalar_text(item, full)


def field_text(field: MetadataField, full: bool = False) -> str:
    """Return one greppable line: ``key: [TYPE] value``."""
    if isinstance(field.value, ArrayValue):
        value = _array_text(field.value, full)
    else:
        value = _scalar_text(field.value, full)
    return f"{printable(field.key)}: {field.type_label()} {value}"


def _json_scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes_hex": value.hex()}
    return value


def _json_value(value: Any) -> Any:
    """Return a scalar or an array value (from a key that may have the wrong type) in JSON form."""
    if isinstance(value, ArrayValue):
        return _json_array(value, full=False)
    return _json_scalar(value)


def _json_array(array: ArrayValue, full: bool) -> Any:
    shown = array.count if full else min(array.count, ARRAY_PREVIEW)
    values = []
    for index in range(shown):
        item = array[index]
        values.append(_json_array(item, full) if isinstance(item, ArrayValue) else _json_scalar(item))
    return values


def field_json(field: MetadataField, full: bool = False) -> dict[str, Any]:
    if isinstance(field.value, ArrayValue):
        return {
            "type": "ARRAY",
            "item_type": field.type_label()[1:-1],
            "count": field.value.count,
            "value": _json_array(field.value, full),
            "truncated": not full and field.value.count > ARRAY_PREVIEW,
        }
    return {"type": field.type_label(), "value": _json_scalar(field.value)}


def tensor_type_summary(model: GGUFModel) -> list[dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for info in model.tensors.values():
        row = summary.setdefault(info.type_name, {"type": info.type_name, "count": 0, "bytes": 0})
        row["count"] += 1
        row["bytes"] += info.nbytes or 0
    return sorted(summary.values(), key=lambda row: -row["bytes"])


def mtp_json(info: MTPInfo, model: GGUFModel) -> dict[str, Any]:
    return {
        "nextn_predict_layers": info.nextn_predict_layers,
        "block_count": info.block_count,
        "expected_blocks": info.expected_blocks,
        "blocks": [
            {
                "index": block.index,
                "tensors": {
                    name: (f"blk.{block.index}.nextn.{name}.weight" in model.tensors)
                    for name in REQUIRED_NEXTN_TENSORS + OPTIONAL_NEXTN_TENSORS
                },
                "required_missing": block.missing_required,
                "layer_tensors": block.layer_tensors,
            }
            for block in info.blocks
        ],
        "layout": info.layout.value,
        "hidden_source_key": info.hidden_source_key,
        "hidden_source": _json_value(info.hidden_source),
        "problems": info.problems,
    }


def inspect_json(model: GGUFModel, info: MTPInfo, full: bool, tensors: bool) -> dict[str, Any]:
    first = model.files[0]
    result: dict[str, Any] = {
        "file": model.path,
        "shards": [gguf_file.path for gguf_file in model.files],
        "gguf_version": model.version,
        "byte_order": "big" if first.byte_order == ">" else "little",
        "file_size": model.file_size,
        "architecture": _json_scalar(model.architecture),
        "name": _json_scalar(model.get("general.name")),
        "tensor_count": len(model.tensors),
        "metadata_count": len(model.metadata),
        "metadata": {json_safe(key): field_json(field, full) for key, field in model.metadata.items()},
        "tensor_types": tensor_type_summary(model),
        "mtp": mtp_json(info, model),
        "problems": model.problems,
    }
    if tensors:
        result["tensors"] = [
            {
                "name": json_safe(tensor.name),
                "shape": list(tensor.shape),
                "type": tensor.type_name,
                "bytes": tensor.nbytes,
                "offset": tensor.absolute_offset,
                "file": os.path.basename(tensor.file.path),
            }
            for tensor in model.tensors.values()
        ]
    return result


def human_bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def inspect_text(model: GGUFModel, info: MTPInfo, full: bool, tensors: bool) -> str:
    first = model.files[0]
    lines = [
        f"file: {printable(model.path)}",
        f"format: GGUF v{model.version}, {'big' if first.byte_order == '>' else 'little'}-endian, "
        f"{human_bytes(model.file_size)}" + (f", {len(model.files)} shards" if model.is_split else ""),
        f"architecture: {printable(model.architecture or '(not set)')}",
        f"name: {printable(model.get('general.name') or '(not set)')}",
        f"tensors: {len(model.tensors)}, metadata keys: {len(model.metadata)}",
        "",
        "metadata:",
    ]
    lines += ["  " + field_text(field, full) for field in model.metadata.values()]

    lines += ["", "tensor types:"]
    rows = [[row["type"], row["count"], human_bytes(row["bytes"])] for row in tensor_type_summary(model)]
    lines += ["  " + line for line in tabulate(rows, headers=["type", "count", "size"]).splitlines()]
    if tensors:
        lines += ["", "tensors:"]
        rows = [
            [printable(t.name), "x".join(map(str, t.shape)), t.type_name, t.nbytes, t.absolute_offset]
            for t in model.tensors.values()
        ]
        lines += ["  " + line for line in tabulate(rows, headers=["name", "shape", "type", "bytes", "offset"]).splitlines()]

    lines += ["", "MTP:"]
    lines.append(f"  nextn_predict_layers: {info.nextn_predict_layers if info.nextn_predict_layers is not None else '(not set)'}")
    lines.append(f"  MTP blocks (from tensors): {', '.join(map(str, info.block_indices)) or 'none'}")
    lines.append(f"  layout: {info.layout.value}")
    for block in info.blocks:
        for name in REQUIRED_NEXTN_TENSORS + OPTIONAL_NEXTN_TENSORS:
            tensor = f"blk.{block.index}.nextn.{name}.weight"
            if tensor in model.tensors:
                state = "found"
            elif name in REQUIRED_NEXTN_TENSORS:
                state = "MISSING"
            else:
                state = "absent (falls back to the trunk's tensor)"
            lines.append(f"  {tensor}: {state}")
        lines.append(f"  blk.{block.index} decoder layer tensors: {block.layer_tensors}")
    if info.hidden_source_key:
        source = printable(info.hidden_source) if info.hidden_source is not None else "(not set)"
        lines.append(f"  {info.hidden_source_key}: {source}")
    problems = info.problems + model.problems
    if problems:
        lines += ["", "problems:"]
        lines += [f"  - {printable(problem)}" for problem in problems]
    return "\n".join(lines)


def verify_json(verdict: Verdict, path: str) -> dict[str, Any]:
    spread = verdict.norm_spread
    return {
        "file": path,
        "verdict": verdict.source,
        "strength": verdict.strength,
        "reason": verdict.reason,
        "acceptance": {
            feed: {"accepted": score.accepted, "positions": score.positions, "rate": score.acceptance}
            for feed, score in verdict.scores.items()
        },
        "difference": verdict.difference,
        "difference_ci95": list(verdict.ci95),
        "discordant": {"post_norm_only": verdict.post_only, "pre_norm_only": verdict.pre_only},
        "p_value": verdict.p_value,
        "control_acceptance": verdict.control_acceptance,
        "output_norm": {
            "mean": spread.mean,
            "std": spread.std,
            "min": spread.min,
            "max": spread.max,
            "coefficient_of_variation": spread.coefficient_of_variation,
        },
        "tokens": verdict.tokens,
        "windows": verdict.windows,
        "window_length": verdict.window_length,
        "file_key": verdict.file_key,
        "file_value": _json_value(verdict.file_value),
        "agrees_with_file": verdict.agrees_with_file,
    }


def verify_text(verdict: Verdict, path: str, text_name: str) -> str:
    spread = verdict.norm_spread
    rows = [
        [feed, score.accepted, score.positions, f"{score.acceptance:.1%}"] for feed, score in verdict.scores.items()
    ]
    low, high = verdict.ci95
    lines = [
        f"file: {printable(path)}",
        f"text: {printable(text_name)}, {verdict.tokens} tokens in {verdict.windows} "
        f"window{'s' if verdict.windows != 1 else ''} of up to {verdict.window_length}",
        f"output_norm weights: mean {spread.mean:.3f}, std {spread.std:.3f}, min {spread.min:.3f}, "
        f"max {spread.max:.3f}, coefficient of variation {spread.coefficient_of_variation:.3f}",
        "",
        tabulate(rows, headers=["feed", "accepted", "positions", "depth-1 acceptance"]),
        "",
        f"paired difference (post_norm - pre_norm): {verdict.difference * 100:+.2f} points, "
        f"95% CI [{low * 100:+.2f}, {high * 100:+.2f}]",
        f"positions accepted by one feed only: post_norm {verdict.post_only}, pre_norm {verdict.pre_only}; "
        f"McNemar exact p = {verdict.p_value:.3g}",
        "control (drafts against the token one step later): "
        + ", ".join(f"{feed} {rate:.1%}" for feed, rate in verdict.control_acceptance.items()),
        "",
        f"verdict: {verdict.source} ({'no' if verdict.strength == 'none' else verdict.strength} evidence): "
        f"{verdict.reason}",
    ]
    if verdict.file_value is None:
        lines.append(f"{verdict.file_key}: not set in the file")
    elif verdict.agrees_with_file is None:
        lines.append(f"{verdict.file_key}: {printable(verdict.file_value)} in the file (no verdict to compare)")
    elif verdict.agrees_with_file:
        lines.append(f"{verdict.file_key}: {printable(verdict.file_value)} in the file, which agrees")
    else:
        lines.append(
            f"{verdict.file_key}: {printable(verdict.file_value)} in the file, which DISAGREES with the measurement"
        )
    return "\n".join(lines)
