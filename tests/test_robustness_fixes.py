"""Malformed files that used to end in a traceback or a misleading message: damaged vocabulary keys, a
hidden-source key of the wrong type, files cut short, and command-line mistakes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from gguf_bytes import ARRAY, INT32, STRING, UINT32, Packer

from gguftools import tokenize
from gguftools.cli import cli
from gguftools.container import GGUFFile, open_gguf
from gguftools.errors import ModelError
from gguftools.mtp import Layout, describe_mtp
from gguftools.render import json_safe, printable
from gguftools.tokenize import load_tokenizer
from gguftools.validate import validate_file

TOKENS = ["a", "b", "c", "ab"]
MERGES = ["a b"]
TRUNCATED_MESSAGE = "the tensor infos are truncated, so the MTP layout cannot be determined"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mtp_model(
    arch: str = "llama",
    tokens: tuple[int, object] = (STRING, TOKENS),
    merges: tuple[int, object] = (ARRAY, (STRING, MERGES)),
    hidden_source: tuple[int, object] | None = None,
) -> Packer:
    """A tiny model with one trunk block, one complete MTP block and a byte-level BPE vocabulary.

    ``tokens`` is (item type, items) of tokenizer.ggml.tokens; ``merges`` and ``hidden_source`` are
    (value type, value) of their keys.
    """
    packer = Packer()
    packer.add("general.architecture", STRING, arch)
    packer.add(f"{arch}.block_count", UINT32, 2)
    packer.add(f"{arch}.nextn_predict_layers", UINT32, 1)
    packer.add("tokenizer.ggml.model", STRING, "gpt2")
    packer.add("tokenizer.ggml.pre", STRING, "qwen2")
    packer.add("tokenizer.ggml.tokens", ARRAY, tokens)
    packer.add("tokenizer.ggml.merges", *merges)
    if hidden_source is not None:
        packer.add(f"{arch}.nextn_hidden_source", *hidden_source)
    packer.f32_tensor("token_embd.weight", [0.5] * 8, (2, 4))
    for block in (0, 1):
        packer.f32_tensor(f"blk.{block}.attn_norm.weight", [1.0, 1.0])
    packer.f32_tensor("blk.1.nextn.eh_proj.weight", [0.25] * 8, (4, 2))
    packer.f32_tensor("blk.1.nextn.enorm.weight", [1.0, 1.0])
    packer.f32_tensor("blk.1.nextn.hnorm.weight", [1.0, 1.0])
    return packer


def write(path: Path, packer: Packer) -> Path:
    path.write_bytes(packer.pack())
    return path


def cut_in_tensor_infos(path: Path, tensor_index: int) -> Path:
    """Cut ``path`` a few bytes into the tensor info at ``tensor_index`` (0 is the first)."""
    with GGUFFile(path) as gguf_file:
        starts = [gguf_file.metadata_end]
        names = list(gguf_file.tensors)
        # each F32 tensor info: name string, n_dims u32, dims u64 each, type u32, offset u64
        for name in names:
            info = gguf_file.tensors[name]
            starts.append(starts[-1] + 8 + len(info.raw_name) + 4 + 8 * len(info.ggml_shape) + 4 + 8)
    data = path.read_bytes()
    path.write_bytes(data[: starts[tensor_index] + 10])
    return path


# -- damaged vocabulary keys ---------------------------------------------------------------------------


TOKENIZER_CASES = {
    "token not UTF-8": (
        dict(tokens=(STRING, ["a", b"\xff\xfe", "c", "ab"])),
        "tokenizer.ggml.tokens[1] is not valid UTF-8: b'\\xff\\xfe'",
    ),
    "merge not UTF-8": (
        dict(merges=(ARRAY, (STRING, ["a b", b"\xff b"]))),
        "tokenizer.ggml.merges[1] is not valid UTF-8: b'\\xff b'",
    ),
    "merge of unknown token": (
        dict(merges=(ARRAY, (STRING, ["a b", "a x"]))),
        "tokenizer.ggml.merges[1] is 'a x', but 'x' is not a token in tokenizer.ggml.tokens",
    ),
    "merged token unknown": (
        dict(merges=(ARRAY, (STRING, ["b c"]))),
        "tokenizer.ggml.merges[0] is 'b c', but 'bc' is not a token in tokenizer.ggml.tokens",
    ),
    "merge without space": (
        dict(merges=(ARRAY, (STRING, ["a b", "ab"]))),
        "tokenizer.ggml.merges[1] is 'ab', which has no space between its two tokens",
    ),
    "tokens of INT32": (
        dict(tokens=(INT32, [1, 2, 3])),
        "tokenizer.ggml.tokens has type [INT32], expected [STRING] (an array of strings)",
    ),
    "merges not an array": (
        dict(merges=(STRING, "a b")),
        "tokenizer.ggml.merges has type STRING, expected [STRING] (an array of strings)",
    ),
}


@pytest.mark.parametrize("case", list(TOKENIZER_CASES))
def test_load_tokenizer_rejects_damaged_data(tmp_path, case):
    keys, message = TOKENIZER_CASES[case]
    path = write(tmp_path / "m.gguf", mtp_model(**keys))
    with open_gguf(path) as model, pytest.raises(ModelError) as raised:
        load_tokenizer(model)
    assert str(raised.value) == f"{path}: {message}"


def test_load_tokenizer_accepts_small_vocabulary(tmp_path):
    path = write(tmp_path / "m.gguf", mtp_model())
    with open_gguf(path) as model:
        tokenizer = load_tokenizer(model)
    assert tokenizer.encode("abc", add_special_tokens=False).ids == [3, 2]


def test_load_tokenizer_wraps_tokenizers_error(tmp_path, monkeypatch):
    def reject(**_kwargs):
        raise Exception("Error while initializing BPE: something new")  # what tokenizers raises

    monkeypatch.setattr(tokenize.models, "BPE", reject)
    path = write(tmp_path / "m.gguf", mtp_model())
    with open_gguf(path) as model, pytest.raises(ModelError) as raised:
        load_tokenizer(model)
    assert "do not form a valid BPE vocabulary: Error while initializing BPE: something new" in str(raised.value)


@pytest.mark.parametrize("case", list(TOKENIZER_CASES))
def test_validate_reports_tokenizer_data(tmp_path, case):
    keys, message = TOKENIZER_CASES[case]
    path = write(tmp_path / "m.gguf", mtp_model(**keys))
    findings = [(finding.rule, finding.message) for finding in validate_file(path).findings]
    assert ("tokenizer-data", f"key {message}") in findings


def test_validate_tokenizer_type_reported_once(tmp_path):
    # The qwen35 schema types tokenizer.ggml.tokens, so key-type reports the wrong type alone.
    path = write(tmp_path / "m.gguf", mtp_model(arch="qwen35", tokens=(INT32, [1, 2, 3])))
    rules = [finding.rule for finding in validate_file(path).findings]
    assert "key-type" in rules
    assert "tokenizer-data" not in rules


def test_validate_clean_vocabulary_has_no_tokenizer_data(tmp_path):
    path = write(tmp_path / "m.gguf", mtp_model())
    rules = [finding.rule for finding in validate_file(path).findings]
    assert "tokenizer-data" not in rules


# -- a hidden-source key that is not a string ------------------------------------------------------------


def test_printable_accepts_any_scalar():
    assert printable(1) == "1"
    assert printable(2.5) == "2.5"
    assert json_safe(True) == "True"
    assert printable(b"post\x1b") == "post\\x1b"


def test_describe_mtp_hidden_source_of_wrong_type(tmp_path):
    path = write(tmp_path / "m.gguf", mtp_model(hidden_source=(UINT32, 1)))
    with open_gguf(path) as model:
        info = describe_mtp(model)
    assert info.hidden_source == 1
    assert "llama.nextn_hidden_source has type UINT32, expected STRING" in info.problems


def test_inspect_hidden_source_of_wrong_type(tmp_path):
    path = write(tmp_path / "m.gguf", mtp_model(hidden_source=(UINT32, 1)))
    result = run("inspect", str(path))
    assert result.exit_code == 0, result.output
    assert "  llama.nextn_hidden_source: 1" in result.stdout
    assert "llama.nextn_hidden_source has type UINT32, expected STRING" in result.stdout

    result = run("inspect", "--json", str(path))
    assert result.exit_code == 0, result.output
    assert '"hidden_source": 1,' in result.stdout


def test_set_mtp_source_overwrites_wrong_type(tmp_path):
    path = write(tmp_path / "m.gguf", mtp_model(hidden_source=(UINT32, 1)))
    dry = run("set-mtp-source", "--post-norm", "--dry-run", str(path))
    assert dry.exit_code == 0, dry.output
    assert dry.stdout == "llama.nextn_hidden_source: 1 -> post_norm\n"

    result = run("set-mtp-source", "--post-norm", str(path))
    assert result.exit_code == 0, result.output
    with open_gguf(path) as model:
        field = model.metadata["llama.nextn_hidden_source"]
        assert field.type_label() == "STRING"
        assert field.value == "post_norm"


# -- a file cut short inside its tensor infos ------------------------------------------------------------


@pytest.mark.parametrize("tensor_index", [0, 5])  # before any tensor, and inside the MTP block's tensors
def test_describe_mtp_truncated_infos_is_unknown(tmp_path, tensor_index):
    path = cut_in_tensor_infos(write(tmp_path / "m.gguf", mtp_model()), tensor_index)
    with open_gguf(path) as model:
        assert not model.tensor_infos_complete
        info = describe_mtp(model)
    assert info.layout is Layout.UNKNOWN
    assert TRUNCATED_MESSAGE in info.problems
    assert not any("stale" in problem for problem in info.problems)
    assert not any("lacks" in problem for problem in info.problems)


def test_inspect_truncated_infos_shows_unknown(tmp_path):
    path = cut_in_tensor_infos(write(tmp_path / "m.gguf", mtp_model()), 0)
    result = run("inspect", str(path))
    assert result.exit_code == 0, result.output
    assert "  layout: unknown" in result.stdout
    assert TRUNCATED_MESSAGE in result.stdout


@pytest.mark.parametrize("tensor_index", [0, 5])
def test_validate_truncated_infos_no_stale_key(tmp_path, tensor_index):
    packer = mtp_model(hidden_source=(STRING, "post_norm"))
    path = cut_in_tensor_infos(write(tmp_path / "m.gguf", packer), tensor_index)
    rules = [finding.rule for finding in validate_file(path).findings]
    assert "gguf-truncated" in rules
    assert "nextn-stale-key" not in rules
    assert "mtp-partial" not in rules
    assert "hidden-source-without-mtp" not in rules


@pytest.mark.parametrize("flags", [[], ["--force"], ["--dry-run"], ["--force", "--dry-run"]])
def test_set_mtp_source_truncated_infos(tmp_path, flags):
    path = cut_in_tensor_infos(write(tmp_path / "m.gguf", mtp_model()), 0)
    before = sha256(path)
    result = run("set-mtp-source", "--pre-norm", *flags, str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path}: refusing to edit a truncated file: truncated in tensor info 1")
    assert "no MTP tensors" not in result.stderr
    assert result.stdout == ""
    assert sha256(path) == before


# -- a file cut short inside its tensor data -------------------------------------------------------------


def test_dry_run_rejects_truncated_data_like_real_run(tmp_path):
    data = mtp_model().pack()
    path = tmp_path / "m.gguf"
    path.write_bytes(data[:-4])
    real = run("set-mtp-source", "--pre-norm", str(path))
    dry = run("set-mtp-source", "--pre-norm", "--dry-run", str(path))
    assert real.exit_code == 1
    assert "refusing to edit a truncated file" in real.stderr
    assert dry.exit_code == real.exit_code
    assert dry.stderr == real.stderr
    assert dry.stdout == ""


def test_dry_run_rejects_existing_output(tmp_path):
    path = write(tmp_path / "m.gguf", mtp_model())
    output = write(tmp_path / "out.gguf", mtp_model())
    result = run("set-mtp-source", "--pre-norm", "--dry-run", "-o", str(output), str(path))
    assert result.exit_code == 1
    assert result.stderr == f"error: {output}: the output file exists; pass --force to replace it\n"


# -- command-line mistakes ---------------------------------------------------------------------------------


def test_set_mtp_source_both_flags_is_usage_error(tmp_path):
    path = write(tmp_path / "m.gguf", mtp_model())
    before = sha256(path)
    result = run("set-mtp-source", "--post-norm", "--pre-norm", str(path))
    assert result.exit_code == 2
    assert result.stderr == "error: choose one of --post-norm and --pre-norm\n"
    assert sha256(path) == before


@pytest.mark.parametrize(
    "args, exit_code",
    [(["inspect"], 2), (["validate"], 2), (["set-mtp-source", "--post-norm"], 1)],
)
def test_folder_as_file_is_one_line_error(tmp_path, args, exit_code):
    result = run(*args, str(tmp_path))
    assert result.exit_code == exit_code
    assert result.stderr == f"error: {tmp_path}: is a folder, not a GGUF file\n"


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_output_folder_is_one_line_error(tmp_path, dry_run):
    path = write(tmp_path / "m.gguf", mtp_model())
    folder = tmp_path / "folder"
    folder.mkdir()
    result = run("set-mtp-source", "--post-norm", *dry_run, "-o", str(folder), str(path))
    assert result.exit_code == 1
    assert result.stderr == f"error: {folder}: the output is a folder; name a file\n"

