"""Where an edit writes: ``-o`` at the input, at an existing file, into a missing folder, and odd inputs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from editkit import copy_model, make_model, model_versions, run_cli, sha256, start_cli, temps_of

from gguftools.container import ValueType
from gguftools.container.writer import NewValue
from gguftools.edit import set_metadata
from gguftools.errors import EditError

SET_POST = ["set-mtp-source", "--post-norm"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A model file, and the sha256 of its version after ``set-mtp-source --post-norm``."""
    folder = tmp_path_factory.mktemp("model")
    return model_versions(make_model(folder / "original.gguf"), folder, SET_POST)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    return logs


def test_output_is_input_edits_in_place(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    result = run_cli([*SET_POST, str(path), "-o", str(path)], workdir)
    assert result.code == 0, result.stderr
    assert sha256(path) == model["new"]
    assert temps_of(path) == []


@pytest.mark.parametrize("spelling", ["dotted", "symlink"])
def test_output_names_input_another_way(spelling: str, model: dict, tmp_path: Path, workdir: Path) -> None:
    """Another spelling of the input's path (``a/../x``, or a symlink to it) is still an edit in place."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    (tmp_path / "sub").mkdir()
    if spelling == "dotted":
        output = str(tmp_path / "sub" / ".." / "model.gguf")
    else:
        (tmp_path / "link.gguf").symlink_to("model.gguf")
        output = str(tmp_path / "link.gguf")
    result = run_cli([*SET_POST, str(path), "-o", output], workdir)
    assert result.code == 0, result.stderr
    assert sha256(path) == model["new"]
    if spelling == "symlink":
        assert (tmp_path / "link.gguf").is_symlink()


def test_output_new_file(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    path.chmod(0o640)
    output = tmp_path / "out.gguf"
    result = run_cli([*SET_POST, str(path), "-o", str(output)], workdir)
    assert result.code == 0, result.stderr
    assert sha256(output) == model["new"]
    assert sha256(path) == model["old"]
    assert stat.S_IMODE(output.stat().st_mode) == 0o640
    assert temps_of(output) == []


def test_output_exists_rejected(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    output = tmp_path / "out.gguf"
    output.write_bytes(b"someone else's file")
    result = run_cli([*SET_POST, str(path), "-o", str(output)], workdir)
    assert result.code == 1
    assert f"error: {output}: the output file exists; pass --force to replace it" in result.stderr
    assert output.read_bytes() == b"someone else's file"
    assert sha256(path) == model["old"]


def test_output_exists_replaced_with_force(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    output = tmp_path / "out.gguf"
    output.write_bytes(b"someone else's file")
    output.chmod(0o600)
    result = run_cli([*SET_POST, "--force", str(path), "-o", str(output)], workdir)
    assert result.code == 0, result.stderr
    assert sha256(output) == model["new"]
    assert sha256(path) == model["old"]
    # the replaced file's permissions stay with its path
    assert stat.S_IMODE(output.stat().st_mode) == 0o600


def test_output_hard_link_to_input(model: dict, tmp_path: Path, workdir: Path) -> None:
    """A hard link to the input is another existing file: --force replaces that name only."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    output = tmp_path / "same-inode.gguf"
    os.link(path, output)
    rejected = run_cli([*SET_POST, str(path), "-o", str(output)], workdir)
    assert rejected.code == 1
    assert "the output file exists; pass --force to replace it" in rejected.stderr

    result = run_cli([*SET_POST, "--force", str(path), "-o", str(output)], workdir)
    assert result.code == 0, result.stderr
    assert sha256(output) == model["new"]
    assert sha256(path) == model["old"]


def test_output_symlink_target_replaced(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    target = tmp_path / "target.gguf"
    target.write_bytes(b"old output")
    link = tmp_path / "out-link.gguf"
    link.symlink_to("target.gguf")
    result = run_cli([*SET_POST, "--force", str(path), "-o", str(link)], workdir)
    assert result.code == 0, result.stderr
    assert link.is_symlink()
    assert sha256(target) == model["new"]


def test_output_missing_folder(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    output = tmp_path / "missing" / "out.gguf"
    result = run_cli([*SET_POST, str(path), "-o", str(output)], workdir)
    assert result.code == 1
    assert f"the output folder {tmp_path / 'missing'} does not exist" in result.stderr
    assert not (tmp_path / "missing").exists()
    assert sha256(path) == model["old"]


def test_output_is_folder(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    result = run_cli([*SET_POST, str(path), "-o", str(tmp_path)], workdir)
    assert result.code == 1
    assert result.stderr == f"error: {tmp_path}: the output is a folder; name a file\n"
    assert sha256(path) == model["old"]


def test_output_appears_during_edit(model: dict, tmp_path: Path, workdir: Path) -> None:
    """A file created at the output path while the edit runs is not replaced without --force."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    output = tmp_path / "out.gguf"
    child = start_cli([*SET_POST, str(path), "-o", str(output)], workdir, stop_at="before-rename")
    try:
        assert child.stopped
        output.write_bytes(b"written meanwhile")
        result = child.resume()
    finally:
        child.cleanup()
    assert result.code == 1
    assert "the output file appeared during the edit; pass --force to replace it" in result.stderr
    assert output.read_bytes() == b"written meanwhile"
    assert temps_of(output) == []


def test_missing_input(tmp_path: Path, workdir: Path) -> None:
    result = run_cli([*SET_POST, str(tmp_path / "missing.gguf")], workdir)
    assert result.code != 0
    assert "missing.gguf: file not found" in result.stderr


def test_input_not_gguf(tmp_path: Path, workdir: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"plain text, not a model")
    result = run_cli([*SET_POST, str(path)], workdir)
    assert result.code != 0
    assert "not a GGUF file" in result.stderr
    assert path.read_bytes() == b"plain text, not a model"
    assert temps_of(path) == []


def test_leftover_of_output_reported(model: dict, tmp_path: Path, workdir: Path) -> None:
    """Leftovers are looked for beside the file written, which with -o is the output."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    output = tmp_path / "out.gguf"
    child = start_cli([*SET_POST, str(path), "-o", str(output)], workdir, stop_at="written")
    try:
        assert child.stopped
        child.kill()
    finally:
        child.cleanup()
    leftovers = temps_of(output)
    assert len(leftovers) == 1
    assert not output.exists()

    result = run_cli([*SET_POST, str(path), "-o", str(output)], workdir)
    assert result.code == 0, result.stderr
    assert f"removed a temporary file left by an interrupted edit: {leftovers[0]}" in result.stderr
    assert temps_of(output) == []
    assert sha256(output) == model["new"]


def test_library_rejects_existing_output(model: dict, tmp_path: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    output = tmp_path / "out.gguf"
    output.write_bytes(b"keep me")
    with pytest.raises(EditError, match="the output file exists"):
        set_metadata(str(path), {"general.name": NewValue(ValueType.STRING, "x")}, output=str(output))
    assert output.read_bytes() == b"keep me"
