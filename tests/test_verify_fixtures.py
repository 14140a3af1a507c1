"""verify on the trained fixtures: the verdict each was built for, and the acceptance training measured.

The fixtures' heads were trained on a known feed, and tools/make_fixtures.py measured their depth-1
acceptance in torch on the same sample text, windows and positions that verify uses; manifest.json records
the figures. The numpy model is a different implementation in a different float order, so a few
positions whose top two tokens nearly tie can flip: the tolerance is half a point (20 of 4080 positions).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gguftools.cli import cli
from gguftools.container import open_gguf
from gguftools.tokenize import load_tokenizer
from gguftools.verify import demo_model_path, run_verify, sample_text

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
ACCEPTANCE_TOLERANCE = 0.005
HEADS = {"post_norm": "post_norm_head", "pre_norm": "pre_norm_head"}


def fixture_path(name: str) -> Path:
    return Path(demo_model_path()) if name == "demo.gguf" else FIXTURES / name


@pytest.fixture(scope="module")
def verdicts():
    results = {}
    for name in MANIFEST["expected_verdict"]:
        with open_gguf(fixture_path(name)) as model:
            results[name] = run_verify(model, sample_text(), max_tokens=MANIFEST["measurement"]["tokens_used"])
    return results


@pytest.mark.parametrize("name", sorted(MANIFEST["expected_verdict"]))
def test_fixture_verdict(verdicts, name):
    verdict = verdicts[name]
    assert verdict.source == MANIFEST["expected_verdict"][name]
    assert verdict.strength == "strong"


@pytest.mark.parametrize("name", sorted(MANIFEST["expected_verdict"]))
def test_fixture_acceptance_matches_training(verdicts, name):
    verdict = verdicts[name]
    trained_on = MANIFEST["expected_verdict"][name]
    recorded = MANIFEST["measurement"]["acceptance"][HEADS[trained_on]]
    assert verdict.scores["post_norm"].positions == MANIFEST["measurement"]["positions"]
    for feed in ("post_norm", "pre_norm"):
        assert verdict.scores[feed].acceptance == pytest.approx(recorded[feed], abs=ACCEPTANCE_TOLERANCE), feed


def test_control_is_near_chance(verdicts):
    for name, verdict in verdicts.items():
        for feed, rate in verdict.control_acceptance.items():
            assert rate < 0.15, (name, feed)


def test_tokenizer_matches_training_tokenizer():
    reference = np.load(FIXTURES / "reference.npz")
    with open_gguf(FIXTURES / "qwen35-mtp-post.f32.gguf") as model:
        tokenizer = load_tokenizer(model)
    ids = tokenizer.encode(sample_text(), add_special_tokens=False).ids
    expected = reference["sample_tokens"]
    assert ids[: len(expected)] == expected.tolist()


def test_tokenizer_round_trips_text():
    with open_gguf(FIXTURES / "qwen35-mtp-post.f32.gguf") as model:
        tokenizer = load_tokenizer(model)
    text = "def f(x):\n    return x ** 2  # naïve, ünïcode\n"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False).ids) == text


def test_verify_without_argument_runs_demo():
    result = CliRunner().invoke(cli, ["verify", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "verdict: post_norm (strong evidence)" in result.output


def test_verify_json_and_write(tmp_path):
    path = tmp_path / "model.gguf"
    shutil.copyfile(FIXTURES / "qwen35-mtp-pre.f32.gguf", path)
    result = CliRunner().invoke(cli, ["verify", "--quiet", "--json", "--tokens", "1024", "--write", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[: result.output.rindex("}") + 1])
    assert data["verdict"] == "pre_norm"
    assert data["file_value"] is None
    with open_gguf(path) as model:
        assert model.get("qwen35.nextn_hidden_source") == "pre_norm"
        assert "verdict pre_norm" in model.get("qwen35.nextn_hidden_source_evidence")
    again = CliRunner().invoke(cli, ["verify", "--quiet", "--tokens", "1024", str(path)])
    assert "pre_norm in the file, which agrees" in again.output


def test_verify_reports_disagreeing_key(tmp_path):
    path = tmp_path / "model.gguf"
    shutil.copyfile(FIXTURES / "qwen35-mtp-post.f32.gguf", path)
    assert CliRunner().invoke(cli, ["set-mtp-source", "--pre-norm", str(path)]).exit_code == 0
    result = CliRunner().invoke(cli, ["verify", "--quiet", "--tokens", "1024", str(path)])
    assert result.exit_code == 0
    assert "DISAGREES" in result.output


def test_verify_rejects_short_text(tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("a", encoding="utf-8")
    result = CliRunner().invoke(cli, ["verify", "--quiet", "--text", str(text)])
    assert result.exit_code == 1
    assert "too few to score" in result.output


def test_verify_write_needs_file():
    result = CliRunner().invoke(cli, ["verify", "--quiet", "--write"])
    assert result.exit_code == 2
    assert "--write needs FILE" in result.output


def test_verify_write_checks_file_before_scoring(tmp_path):
    path = tmp_path / "model.gguf"
    shutil.copyfile(FIXTURES / "qwen35-mtp-pre.f32.gguf", path)
    path.chmod(0o444)
    result = CliRunner().invoke(cli, ["verify", "--write", str(path)])
    assert result.exit_code == 1
    assert "read-only" in result.output
    assert "scored" not in result.output


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_verify_text_must_be_regular_file(tmp_path, kind):
    text = tmp_path / "text"
    if kind == "fifo":
        os.mkfifo(text)
    else:
        text.mkdir()
    result = CliRunner().invoke(cli, ["verify", "--quiet", "--text", str(text)])
    assert result.exit_code == 1
    assert "is not a regular file" in result.output


def test_text_file_read_partially(tmp_path, monkeypatch):
    import gguftools.verify as verify_module

    monkeypatch.setattr(verify_module, "TEXT_CHUNK", 4096)
    sample = sample_text()
    path = tmp_path / "long.txt"
    path.write_text(sample * 20, encoding="utf-8")
    with open_gguf(Path(demo_model_path())) as model:
        tokenizer = load_tokenizer(model)
    expected = tokenizer.encode(sample, add_special_tokens=False).ids[:1000]
    reads = []
    real_open = open

    def counting_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if str(file) == str(path):
            real_read = handle.read
            handle.read = lambda size=-1: reads.append(size) or real_read(size)
        return handle

    monkeypatch.setattr("builtins.open", counting_open)
    tokens = verify_module.TextSource("long", path=str(path)).tokens(tokenizer, 1000)
    assert tokens.tolist() == expected
    assert max(reads) < path.stat().st_size


def test_text_cut_inside_character_is_not_an_error(tmp_path, monkeypatch):
    import gguftools.verify as verify_module

    monkeypatch.setattr(verify_module, "TEXT_CHUNK", 4096)
    path = tmp_path / "accents.txt"
    path.write_text("é" * 50_000, encoding="utf-8")  # two bytes each: every even cut splits nothing, odd ones do
    with open_gguf(Path(demo_model_path())) as model:
        tokenizer = load_tokenizer(model)
    tokens = verify_module.TextSource("accents", path=str(path)).tokens(tokenizer, 100)
    assert len(tokens) == 100


def test_write_again_is_a_no_op(tmp_path):
    path = tmp_path / "model.gguf"
    shutil.copyfile(FIXTURES / "qwen35-mtp-post.f32.gguf", path)
    first = CliRunner().invoke(cli, ["verify", "--quiet", "--tokens", "512", "--write", str(path)])
    assert "wrote qwen35.nextn_hidden_source = post_norm" in first.output
    inode = path.stat().st_ino
    again = CliRunner().invoke(cli, ["verify", "--quiet", "--tokens", "512", "--write", str(path)])
    assert again.exit_code == 0
    assert "already post_norm with the same evidence; nothing to do" in again.output
    assert path.stat().st_ino == inode


def test_set_mtp_source_removes_contradicted_evidence(tmp_path):
    path = tmp_path / "model.gguf"
    shutil.copyfile(FIXTURES / "qwen35-mtp-post.f32.gguf", path)
    CliRunner().invoke(cli, ["verify", "--quiet", "--tokens", "512", "--write", str(path)])
    result = CliRunner().invoke(cli, ["set-mtp-source", "--pre-norm", str(path)])
    assert result.exit_code == 0
    assert "qwen35.nextn_hidden_source_evidence: removed" in result.output
    with open_gguf(path) as model:
        assert model.get("qwen35.nextn_hidden_source") == "pre_norm"
        assert "qwen35.nextn_hidden_source_evidence" not in model.metadata


def test_repetitive_text_is_undetermined(tmp_path):
    text = tmp_path / "nul.txt"
    text.write_bytes(b"\0" * 20000)
    result = CliRunner().invoke(cli, ["verify", "--quiet", "--text", str(text)])
    assert result.exit_code == 0
    assert "verdict: undetermined" in result.output


def test_missing_text_file(tmp_path):
    result = CliRunner().invoke(cli, ["verify", "--quiet", "--text", str(tmp_path / "absent.txt")])
    assert result.exit_code == 1
    assert "absent.txt: file not found" in result.output
