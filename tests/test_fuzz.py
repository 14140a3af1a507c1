"""Fuzz the reader, MTP detection, rendering and validate with damaged copies of valid files.

Hypothesis runs a fixed number of examples with derandomize=True, so every CI run tries the same inputs.
Each input must either open and go through every consumer, or raise a GGUFToolsError; any other exception
fails the test. A file of a few hundred bytes takes milliseconds, so a hang shows up as a test timeout.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gguf_bytes import ARRAY, STRING, UINT32, Packer, small_model
from gguftools.container import open_gguf
from gguftools.errors import GGUFToolsError
from gguftools.mtp import describe_mtp
from gguftools.render import inspect_json, inspect_text
from gguftools.validate import report_json, report_text, validate_model


def _seed_files() -> list[bytes]:
    little = small_model()
    little.add("general.alignment", UINT32, 32)
    little.add("qwen35.nextn_hidden_source", STRING, "post_norm")
    little.add("deep", ARRAY, (ARRAY, [(UINT32, [1, 2]), (STRING, ["x"])]))
    return [
        little.pack(),
        small_model(Packer(byte_order=">")).pack(),
        small_model(Packer(version=1)).pack(),
    ]


SEEDS = _seed_files()

# Edits that keep most of the structure: overwrite bytes, write a chosen integer, cut, or insert.
byte_edit = st.tuples(st.just("byte"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
number_edit = st.tuples(
    st.just("number"),
    st.integers(0, 10_000),
    st.sampled_from([0, 1, 2, 7, 8, 9, 12, 13, 255, 2**31, 2**32 - 1, 2**63, 2**64 - 1]),
)
cut_edit = st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(b""))
insert_edit = st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=16))
edits = st.lists(st.one_of(byte_edit, number_edit, cut_edit, insert_edit), min_size=1, max_size=4)


def mutate(data: bytes, changes: list[tuple[str, int, object]]) -> bytes:
    out = bytearray(data)
    for kind, position, payload in changes:
        position %= max(len(out), 1)
        if kind == "byte":
            out[position : position + len(payload)] = payload
        elif kind == "number":
            width = 8 if payload >= 2**32 else 4
            out[position : position + width] = struct.pack("<Q" if width == 8 else "<I", payload)
        elif kind == "cut":
            del out[position:]
        else:
            out[position:position] = payload
    return bytes(out)


def exercise(path) -> None:
    """Run every consumer of an opened model; only GGUFToolsError may escape."""
    try:
        with open_gguf(path) as model:
            info = describe_mtp(model)
            inspect_text(model, info, full=False, tensors=True)
            inspect_json(model, info, full=False, tensors=True)
            report = validate_model(model)
            report_text(report)
            report_json(report)
    except GGUFToolsError:
        pass


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.sampled_from(range(len(SEEDS))), changes=edits)
def test_damaged_files_never_crash(tmp_path, seed, changes):
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(mutate(SEEDS[seed], changes))
    exercise(path)


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_random_bytes_after_header(tmp_path, data):
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(b"GGUF" + data)
    exercise(path)
