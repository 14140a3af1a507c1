"""The command line as a user meets it: output, exit codes, one-line errors."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from ggufbuild import write_gguf

from gguftools.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_inspect_shows_mtp_section(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", vocab=40)
    result = run("inspect", str(path))
    assert result.exit_code == 0, result.output
    assert "architecture: qwen35" in result.output
    assert "layout: complete" in result.output
    assert "blk.2.nextn.eh_proj.weight: found" in result.output
    assert "qwen35.nextn_hidden_source: (not set)" in result.output
    assert "... 32 more items" in result.output


def test_inspect_full_prints_every_item(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", vocab=40)
    result = run("inspect", "--full", str(path))
    assert "more items" not in result.output
    assert "'t39'" in result.output


def test_inspect_json_shape(tmp_path):
    path = write_gguf(tmp_path / "m.gguf")
    result = run("inspect", "--json", "--tensors", str(path))
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["architecture"] == "qwen35"
    assert data["mtp"]["layout"] == "complete"
    assert data["mtp"]["blocks"][0]["index"] == 2
    assert data["mtp"]["blocks"][0]["tensors"]["eh_proj"] is True
    assert data["metadata"]["qwen35.block_count"] == {"type": "UINT32", "value": 3}
    assert {tensor["name"] for tensor in data["tensors"]} >= {"token_embd.weight", "blk.2.nextn.hnorm.weight"}


def test_inspect_escapes_control_characters(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", extra_keys={"general.name": "evil\x1b[2Jname"})
    result = run("inspect", str(path))
    assert "\x1b" not in result.output
    assert "evil\\x1b[2Jname" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "too short"),
        (b"PK\x03\x04 not a model", "not a GGUF file"),
        (b"GGUF\x03\x00\x00\x00\x01", "truncated at offset 8"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    result = run("inspect", str(path))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0]
    assert message in lines[0]


def test_missing_file_error(tmp_path):
    result = run("inspect", str(tmp_path / "absent.gguf"))
    assert result.exit_code == 2
    assert "file not found" in result.output


def test_set_mtp_source_then_inspect(tmp_path):
    path = write_gguf(tmp_path / "m.gguf")
    result = run("set-mtp-source", "--post-norm", str(path))
    assert result.exit_code == 0, result.output
    assert "qwen35.nextn_hidden_source: (not set) -> post_norm" in result.output
    assert "qwen35.nextn_hidden_source: post_norm" in run("inspect", str(path)).output
    result = run("set-mtp-source", "--pre-norm", str(path))
    assert "post_norm -> pre_norm" in result.output
    assert "qwen35.nextn_hidden_source: pre_norm" in run("inspect", str(path)).output


def test_set_mtp_source_dry_run_writes_nothing(tmp_path):
    path = write_gguf(tmp_path / "m.gguf")
    before = sha256(path)
    result = run("set-mtp-source", "--pre-norm", "--dry-run", str(path))
    assert result.exit_code == 0
    assert result.output.strip() == "qwen35.nextn_hidden_source: (not set) -> pre_norm"
    assert sha256(path) == before


def test_set_mtp_source_refuses_file_without_mtp(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", nextn_blocks=0)
    before = sha256(path)
    result = run("set-mtp-source", "--post-norm", str(path))
    assert result.exit_code == 1
    assert "no MTP tensors" in result.output
    assert "--force" in result.output
    assert sha256(path) == before
    forced = run("set-mtp-source", "--post-norm", "--force", str(path))
    assert forced.exit_code == 0


def test_set_mtp_source_needs_a_choice(tmp_path):
    path = write_gguf(tmp_path / "m.gguf")
    result = run("set-mtp-source", str(path))
    assert result.exit_code == 2
    assert "--post-norm or --pre-norm" in result.output


def test_verify_refuses_unsupported_architecture(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", arch="llama")
    result = run("verify", str(path))
    assert result.exit_code == 1
    assert "verify supports the architectures qwen35, not 'llama'" in result.output
    assert "Traceback" not in result.output


def test_every_command_is_in_readme():
    readme = README.read_text(encoding="utf-8")
    for name in cli.commands:
        assert re.search(rf"gguftools {re.escape(name)}\b", readme), name


def test_every_command_has_an_example():
    for name, command in cli.commands.items():
        assert "Example: gguftools " + name in (command.help or ""), name
