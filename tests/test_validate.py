"""``validate``: schemas, rule ids and exit codes, on small files written with gguf-py's GGUFWriter."""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from gguftools.cli import cli
from gguftools.schema import default_schema_dir, load_schema
from gguftools.validate import RULES, validate_file

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
EMBED, HEADS, HEAD_DIM, FF, VOCAB = 8, 2, 4, 16, 6


def write_qwen35(
    path: Path,
    *,
    keys: dict | None = None,
    drop_keys: tuple[str, ...] = (),
    drop_tensors: tuple[str, ...] = (),
    shapes: dict[str, tuple[int, ...]] | None = None,
    norm_offset: float = 1.0,
    mtp_norm_offset: float | None = None,
    with_mtp: bool = True,
    nextn_key: int = 1,
) -> Path:
    """A complete qwen35 file: blocks 0 (DeltaNet, shown by ssm_norm only) and 1 (full attention), MTP block 2.

    Norm weights are ``norm_offset + small noise``; the family stores 1 + w, so 1.0 is the healthy value.
    """
    rng = np.random.default_rng(0)
    arch = "qwen35"
    writer = gguf.GGUFWriter(str(path), arch)
    values = {
        f"{arch}.block_count": (3, "uint32"),
        f"{arch}.nextn_predict_layers": (nextn_key, "uint32"),
        f"{arch}.context_length": (256, "uint32"),
        f"{arch}.embedding_length": (EMBED, "uint32"),
        f"{arch}.feed_forward_length": (FF, "uint32"),
        f"{arch}.attention.head_count": (HEADS, "uint32"),
        f"{arch}.attention.head_count_kv": (1, "uint32"),
        f"{arch}.attention.key_length": (HEAD_DIM, "uint32"),
        f"{arch}.attention.value_length": (HEAD_DIM, "uint32"),
        f"{arch}.attention.layer_norm_rms_epsilon": (1e-6, "float32"),
        f"{arch}.rope.freq_base": (10000.0, "float32"),
        f"{arch}.rope.dimension_count": (HEAD_DIM, "uint32"),
        f"{arch}.full_attention_interval": (2, "uint32"),
        f"{arch}.ssm.conv_kernel": (4, "uint32"),
        f"{arch}.ssm.inner_size": (8, "uint32"),
        f"{arch}.ssm.state_size": (4, "uint32"),
        f"{arch}.ssm.time_step_rank": (2, "uint32"),
        f"{arch}.ssm.group_count": (1, "uint32"),
        "tokenizer.ggml.model": ("gpt2", "string"),
        "tokenizer.ggml.pre": ("qwen35", "string"),
    }
    values.update(keys or {})
    for key, (value, kind) in values.items():
        if key not in drop_keys:
            getattr(writer, f"add_{kind}")(key, value)
    if "tokenizer.ggml.tokens" not in drop_keys:
        writer.add_token_list([f"t{i}" for i in range(VOCAB)])

    def tensor(name: str, shape: tuple[int, ...], offset: float | None = None) -> None:
        if name in drop_tensors:
            return
        shape = (shapes or {}).get(name, shape)
        data = rng.standard_normal(shape).astype(np.float32) * 0.05
        if offset is not None:
            data += np.float32(offset)
        writer.add_tensor(name, data)

    mtp_offset = norm_offset if mtp_norm_offset is None else mtp_norm_offset
    tensor("token_embd.weight", (VOCAB, EMBED))
    tensor("output_norm.weight", (EMBED,), norm_offset)
    tensor("blk.0.attn_norm.weight", (EMBED,), norm_offset)
    tensor("blk.0.ssm_norm.weight", (HEAD_DIM,), 1.0)  # stored as is, never shifted
    tensor("blk.0.ffn_up.weight", (FF, EMBED))
    blocks = [1, 2] if with_mtp else [1]
    for block in blocks:
        offset = mtp_offset if block == 2 else norm_offset
        tensor(f"blk.{block}.attn_norm.weight", (EMBED,), offset)
        tensor(f"blk.{block}.post_attention_norm.weight", (EMBED,), offset)
        tensor(f"blk.{block}.attn_q.weight", (2 * HEADS * HEAD_DIM, EMBED))
        tensor(f"blk.{block}.attn_k.weight", (HEAD_DIM, EMBED))
        tensor(f"blk.{block}.attn_v.weight", (HEAD_DIM, EMBED))
        tensor(f"blk.{block}.attn_output.weight", (EMBED, HEADS * HEAD_DIM))
        tensor(f"blk.{block}.attn_q_norm.weight", (HEAD_DIM,), offset)
        tensor(f"blk.{block}.attn_k_norm.weight", (HEAD_DIM,), offset)
        tensor(f"blk.{block}.ffn_gate.weight", (FF, EMBED))
        tensor(f"blk.{block}.ffn_up.weight", (FF, EMBED))
        tensor(f"blk.{block}.ffn_down.weight", (EMBED, FF))
    if with_mtp:
        tensor("blk.2.nextn.eh_proj.weight", (EMBED, 2 * EMBED))
        tensor("blk.2.nextn.enorm.weight", (EMBED,), mtp_offset)
        tensor("blk.2.nextn.hnorm.weight", (EMBED,), mtp_offset)
        tensor("blk.2.nextn.shared_head_norm.weight", (EMBED,), mtp_offset)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def findings(path: Path, **kwargs) -> list[tuple[str, str]]:
    return [(f.level, f.rule) for f in validate_file(path, **kwargs).findings]


def rules_of(path: Path, **kwargs) -> list[str]:
    return [rule for _, rule in findings(path, **kwargs)]


# -- the schemas themselves ---------------------------------------------------------------------------

EXPECTED_SOURCES = {
    "qwen35": "post_norm", "qwen35moe": "post_norm", "qwen3next": "post_norm",
    "deepseek2": "pre_norm", "glm4moe": "pre_norm", "mimo2": "pre_norm",
}


@pytest.mark.parametrize("arch", sorted(EXPECTED_SOURCES))
def test_schema_is_valid_and_states_source(arch):
    path = REPO / "schemas" / f"{arch}.json"
    document = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    extra = document["x-gguftools"]
    assert extra["architecture"] == arch
    assert extra["hidden_source"]["key"] == f"{arch}.nextn_hidden_source"
    assert extra["hidden_source"]["expected"] == EXPECTED_SOURCES[arch]
    assert extra["hidden_source"]["source"]
    assert set(extra["hidden_source"]["values"]) == {"post_norm", "pre_norm"}
    metadata = document["properties"]["metadata"]
    assert f"{arch}.nextn_hidden_source" in metadata["properties"]
    assert f"{arch}.block_count" in metadata["required"]
    nextn = document["properties"]["mtp_blocks"]["items"]["properties"]["nextn"]
    assert nextn["required"] == ["eh_proj", "enorm", "hnorm"]


def test_packaged_schemas_are_the_top_level_ones():
    shipped = sorted(p.name for p in default_schema_dir().glob("*.json"))
    assert shipped == sorted(p.name for p in (REPO / "schemas").glob("*.json"))
    assert load_schema("qwen35") is not None
    assert load_schema("../qwen35") is None


# -- findings on built files --------------------------------------------------------------------------


def test_clean_file_without_key_warns_only(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf")
    assert findings(path) == [("warning", "hidden-source-missing")]


def test_clean_file_with_key_and_evidence(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", keys={
        "qwen35.nextn_hidden_source": ("post_norm", "string"),
        "qwen35.nextn_hidden_source_evidence": ("gguftools 0.1.0 verify: post_norm 0.41 vs pre_norm 0.30", "string"),
    })
    assert findings(path) == []


def test_key_without_evidence_is_info(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", keys={"qwen35.nextn_hidden_source": ("post_norm", "string")})
    assert findings(path) == [("info", "hidden-source-evidence-missing")]


def test_differing_source_quotes_evidence(tmp_path):
    evidence = "gguftools 0.1.0 verify: pre_norm 0.52 vs post_norm 0.31 over 3900 positions, p=1e-20"
    path = write_qwen35(tmp_path / "m.gguf", keys={
        "qwen35.nextn_hidden_source": ("pre_norm", "string"),
        "qwen35.nextn_hidden_source_evidence": (evidence, "string"),
    })
    report = validate_file(path)
    assert [(f.level, f.rule) for f in report.findings] == [("warning", "hidden-source-differs")]
    assert evidence in report.findings[0].message
    assert "post_norm" in report.findings[0].message


def test_invalid_source_value_is_error(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", keys={"qwen35.nextn_hidden_source": ("after_norm", "string")})
    assert ("error", "key-value") in findings(path)


def test_missing_and_mistyped_keys(tmp_path):
    path = write_qwen35(
        tmp_path / "m.gguf",
        drop_keys=("qwen35.ssm.state_size",),
        keys={"qwen35.embedding_length": (8.0, "float32"), "qwen35.context_length": (0, "uint32")},
    )
    report = validate_file(path)
    messages = {(f.rule, f.message) for f in report.findings}
    assert ("key-missing", "key qwen35.ssm.state_size is missing") in messages
    assert ("key-type", "key qwen35.embedding_length has type FLOAT32, expected \"UINT32\"") in messages
    assert ("key-value", "key qwen35.context_length is 0, expected at least 1") in messages


def test_int32_block_count_is_mistyped(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", keys={"qwen35.block_count": (3, "int32")})
    assert ("error", "key-type") in findings(path)


def test_stale_key(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", with_mtp=False)
    # block_count 3 but block 2 has no tensors at all: the key is stale
    assert "nextn-stale-key" in rules_of(path)


def test_tensors_without_key(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", nextn_key=0)
    rules = rules_of(path)
    assert "nextn-key-missing" in rules


def test_partial_mtp_block(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", drop_tensors=("blk.2.nextn.hnorm.weight", "blk.2.attn_k.weight"))
    report = validate_file(path)
    partial = [f.message for f in report.findings if f.rule == "mtp-partial"]
    assert any("blk.2.nextn.hnorm.weight" in message for message in partial)
    assert any("attn_q.weight, attn_k.weight and attn_v.weight" in message for message in partial)


def test_mtp_shapes_that_do_not_fit(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", shapes={
        "blk.2.nextn.eh_proj.weight": (EMBED, EMBED),
        "blk.2.ffn_down.weight": (EMBED, 2 * FF),
    })
    report = validate_file(path)
    shape = [f.message for f in report.findings if f.rule == "mtp-shape"]
    assert len(shape) == 2
    assert "blk.2.nextn.eh_proj.weight has shape [8, 8], expected [8, 16]" in shape[0]


def test_mtp_block_in_wrong_position(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", keys={"qwen35.block_count": (4, "uint32")})
    assert "mtp-block-position" in rules_of(path)


def test_nextn_key_leaves_no_trunk(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", nextn_key=3)
    assert "block-count" in rules_of(path)


def test_norms_shifted_twice_in_mtp_block(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", mtp_norm_offset=2.0)
    report = validate_file(path)
    twice = [f for f in report.findings if f.rule == "norm-shifted-twice"]
    assert len(twice) == 1
    assert twice[0].message.startswith("MTP block 2:")


def test_norms_not_shifted(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf", norm_offset=0.0)
    report = validate_file(path)
    groups = sorted(f.message.split(":")[0] for f in report.findings if f.rule == "norm-not-shifted")
    assert groups == ["MTP block 2", "trunk"]


def test_pre_tokenizer_missing_or_unknown(tmp_path):
    missing = write_qwen35(tmp_path / "a.gguf", drop_keys=("tokenizer.ggml.pre",))
    assert ("warning", "tokenizer-pre-missing") in findings(missing)
    unknown = write_qwen35(tmp_path / "b.gguf", keys={"tokenizer.ggml.pre": ("made-up", "string")})
    assert ("warning", "tokenizer-pre-unknown") in findings(unknown)


def test_unknown_architecture_runs_generic_checks(tmp_path):
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "novel")
    writer.add_uint32("novel.block_count", 2)
    writer.add_uint32("novel.nextn_predict_layers", 1)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(4, dtype=np.float32))
    writer.add_tensor("blk.1.attn_norm.weight", np.ones(4, dtype=np.float32))
    writer.add_tensor("blk.1.nextn.eh_proj.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    rules = rules_of(path)
    assert rules[0] == "mtp-partial"  # errors first: enorm and hnorm are missing
    assert "schema-missing" in rules


def test_schema_folder_override(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf")
    folder = tmp_path / "schemas"
    folder.mkdir()
    document = json.loads((REPO / "schemas" / "qwen35.json").read_text())
    document["properties"]["metadata"]["required"].append("qwen35.custom_key")
    (folder / "qwen35.json").write_text(json.dumps(document))
    assert ("error", "key-missing") in findings(path, schema_dir=folder)
    assert "schema-missing" in rules_of(path, schema_dir=tmp_path)  # no qwen35.json there


def test_every_rule_has_a_level():
    assert all(level in ("error", "warning", "info") for level, _ in RULES.values())


# -- the command --------------------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path):
    runner = CliRunner()
    clean = write_qwen35(tmp_path / "clean.gguf")
    result = runner.invoke(cli, ["validate", str(clean)])
    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith("warning hidden-source-missing: key qwen35.nextn_hidden_source")
    assert runner.invoke(cli, ["validate", "--strict", str(clean)]).exit_code == 1

    broken = write_qwen35(tmp_path / "broken.gguf", drop_keys=("qwen35.ssm.state_size",))
    result = runner.invoke(cli, ["validate", str(broken)])
    assert result.exit_code == 1
    assert "error key-missing: key qwen35.ssm.state_size is missing" in result.output

    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF\x03\0\0\0")
    result = runner.invoke(cli, ["validate", str(garbage)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {garbage}: ")


def test_cli_json(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf")
    result = CliRunner().invoke(cli, ["validate", "--json", str(path)])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["architecture"] == "qwen35"
    assert report["counts"] == {"error": 0, "warning": 1, "info": 0}
    assert report["findings"][0]["rule"] == "hidden-source-missing"


def test_cli_broken_schema_exits_2(tmp_path):
    path = write_qwen35(tmp_path / "m.gguf")
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "qwen35.json").write_text("{not json")
    result = CliRunner().invoke(cli, ["validate", "--schema", str(folder), str(path)])
    assert result.exit_code == 2
    assert "qwen35.json" in result.output


# -- the project's fixtures ---------------------------------------------------------------------------

FIXTURE_FILES = sorted(FIXTURES.glob("*.gguf")) + sorted((REPO / "gguftools" / "data").glob("*.gguf"))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_has_no_errors(path):
    report = validate_file(path)
    errors = [f"{f.rule}: {f.message}" for f in report.findings if f.level == "error"]
    assert errors == []
    source = None
    with gguf_reader(path) as model:
        source = model.get("qwen35.nextn_hidden_source")
    rules = {f.rule for f in report.findings}
    if source is None:
        assert "hidden-source-missing" in rules
    assert not rules & {"norm-shifted-twice", "norm-not-shifted", "tokenizer-pre-missing", "tokenizer-pre-unknown"}


def gguf_reader(path):
    from gguftools.container import open_gguf

    return open_gguf(path)


def test_readme_documents_every_rule():
    readme = (REPO / "README.md").read_text()
    if "## Validate and schemas" not in readme:
        pytest.skip("README section not written yet")
    missing = [rule for rule in RULES if f"`{rule}`" not in readme]
    assert missing == []


def test_top_level_schemas_is_the_package_folder():
    # The files live in gguftools/schemas, which setuptools ships as package data; schemas/ links to it.
    assert (REPO / "schemas").is_dir()
    assert os.path.samefile(REPO / "schemas", REPO / "gguftools" / "schemas")
