"""An edit never leaves a damaged model: interruptions, hostile surroundings, links and attributes.

Interruption trials stop the CLI at a named step of the edit or after N bytes of the new file (the test
hook in ``gguftools.edit``), and kill it with SIGKILL from the test. Each trial checks that the path then
contains the old file or the complete new one byte for byte. It also checks that the next run removes the
leftover temporary file and reports it on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from editkit import (
    TRAINED_CANDIDATES,
    TRAINED_FIXTURE,
    copy_model,
    make_model,
    model_versions,
    run_cli,
    sha256,
    start_cli,
    temps_of,
)

import gguftools.cli as cli_module
import gguftools.verify as verify_module
from gguftools.cli import cli
from gguftools.container import open_gguf
from gguftools.edit import STEPS, TEST_CHUNK, TEST_STOP_VARIABLE

SET_POST = ["set-mtp-source", "--post-norm"]
STALE_REPORT = "removed a temporary file left by an interrupted edit: "
BYTE_TRIALS = 100
# steps at which the path must still hold the old file, and whether a temporary file exists then
OLD_FILE_STEPS = {"locked": False, "temp-created": True, "written": True, "checked": True, "before-rename": True}
NEW_FILE_STEPS = ("after-rename", "done")
NOBODY = (65534, 65534)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A model file, and the sha256 and size of its version after ``set-mtp-source --post-norm``."""
    folder = tmp_path_factory.mktemp("model")
    versions = model_versions(make_model(folder / "original.gguf"), folder, SET_POST)
    # every byte trial must stop in a chunk of its own
    assert versions["new_size"] // TEST_CHUNK >= 2 * BYTE_TRIALS
    return versions


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    return logs


def stop_points(byte_trials: int) -> list[str]:
    # byte stops spread over the whole new file, from its first header byte to its last data chunk
    fractions = [index / byte_trials for index in range(byte_trials)]
    return list(STEPS) + [f"fraction:{fraction:.4f}" for fraction in fractions]


def resolve_stop(point: str, new_size: int) -> str:
    if point.startswith("fraction:"):
        return f"bytes:{max(1, int(float(point.removeprefix('fraction:')) * new_size))}"
    return point


def check_interrupted_run(
    args_before_file: list[str], path: Path, old: str, new: str, stop: str, workdir: Path, second_args: list[str]
) -> None:
    """Kill the command at ``stop``, then check the file, the leftover temporary file and the next run."""
    child = start_cli([*args_before_file, str(path)], workdir, stop_at=stop)
    try:
        assert child.stopped, f"the command did not reach {stop}: {child.run}"
        leftover_before_kill = temps_of(path)
        killed = child.kill()
    finally:
        child.cleanup()
    assert killed.code == -signal.SIGKILL

    digest = sha256(path)
    leftovers = temps_of(path)
    assert leftovers == leftover_before_kill
    if stop in NEW_FILE_STEPS:
        assert digest == new, f"killed at {stop}: the path does not hold the complete new file"
        assert leftovers == []
    else:
        assert digest == old, f"killed at {stop}: the path does not hold the old file"
        expect_temp = OLD_FILE_STEPS.get(stop, True)
        assert len(leftovers) == (1 if expect_temp else 0)

    again = run_cli([*second_args, str(path)], workdir)
    assert again.code == 0, again.stderr
    for leftover in leftovers:
        assert STALE_REPORT + leftover in again.stderr
    if not leftovers:
        assert STALE_REPORT not in again.stderr
    assert temps_of(path) == []
    assert sha256(path) == new


@pytest.mark.parametrize("point", stop_points(BYTE_TRIALS))
def test_set_mtp_source_killed(point: str, model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    stop = resolve_stop(point, model["new_size"])
    check_interrupted_run(SET_POST, path, model["old"], model["new"], stop, workdir, SET_POST)


def verify_write_available() -> str | None:
    """Return why the verify --write trials cannot run here, or None when they can."""
    verify = cli.commands.get("verify")
    if verify is None or not any(param.name == "write" for param in verify.params):
        return "this gguftools has no `verify --write` command"
    if not TRAINED_FIXTURE.exists():
        names = " or ".join(path.name for path in TRAINED_CANDIDATES)
        return f"no trained fixture ({names}) in tests/fixtures; tools/make_fixtures.py builds them"
    return None


VERIFY_SKIP = verify_write_available()
VERIFY_TOKENS = 1024
VERIFY_ARGS = ["verify", "--tokens", str(VERIFY_TOKENS), "--quiet", "--write"]


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The trained fixture, and the sha256 and size of its version after ``verify --write``.

    The trials test the write, not the scoring, so the verdict is computed once here, for the fixture's
    bytes, and each forked ``verify --write`` reuses it instead of scoring the same text again. The file's
    current key value is still read from the file each run. ``test_verify_write_real_process`` scores for
    real.
    """
    if VERIFY_SKIP is not None:
        pytest.skip(VERIFY_SKIP)
    with open_gguf(TRAINED_FIXTURE) as fixture:
        verdict = verify_module.run_verify(fixture, verify_module.sample_source(), max_tokens=VERIFY_TOKENS)
    assert verdict.source != "undetermined", f"{TRAINED_FIXTURE.name}: verify is undetermined: {verdict.reason}"

    def reuse_verdict(model, text, **options):
        return dataclasses.replace(verdict, file_value=model.get(verdict.file_key))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_module, "run_verify", reuse_verdict)
        yield model_versions(TRAINED_FIXTURE, tmp_path_factory.mktemp("trained"), VERIFY_ARGS)


@pytest.mark.parametrize("point", stop_points(12))
def test_verify_write_killed(point: str, trained_model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(trained_model["path"], tmp_path / "model.gguf")
    stop = resolve_stop(point, trained_model["new_size"])
    check_interrupted_run(VERIFY_ARGS, path, trained_model["old"], trained_model["new"], stop, workdir, VERIFY_ARGS)


def test_verify_write_real_process(trained_model: dict, tmp_path: Path) -> None:
    """verify --write in a fresh interpreter, scoring for real, killed just before the rename."""
    path = copy_model(trained_model["path"], tmp_path / "model.gguf")
    command = [sys.executable, "-m", "gguftools", *VERIFY_ARGS, str(path)]
    leftovers = kill_real_process(command, "before-rename")
    assert sha256(path) == trained_model["old"]
    assert len(leftovers) == 1
    assert temps_of(path) == leftovers

    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert STALE_REPORT + leftovers[0] in again.stderr
    assert temps_of(path) == []
    assert sha256(path) == trained_model["new"]


def kill_real_process(command: list[str], stop: str) -> list[str]:
    """Run ``command`` with the test hook set to ``stop``, kill it there; return the temporary files left."""
    env = dict(os.environ, **{TEST_STOP_VARIABLE: stop})
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status = os.waitpid(process.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), "the command ended before the stop point"
    os.kill(process.pid, signal.SIGKILL)
    os.waitpid(process.pid, 0)
    process.returncode = -signal.SIGKILL
    return temps_of(command[-1])


@pytest.mark.parametrize("stop", ["bytes:300000", "before-rename", "after-rename"])
def test_killed_real_process(stop: str, model: dict, tmp_path: Path) -> None:
    """The same check with the installed entry point in a fresh interpreter, killed from outside."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    command = [sys.executable, "-m", "gguftools", *SET_POST, str(path)]
    leftovers = kill_real_process(command, stop)
    if stop == "after-rename":
        assert sha256(path) == model["new"]
        assert leftovers == []
    else:
        assert sha256(path) == model["old"]
        assert len(leftovers) == 1

    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    for leftover in leftovers:
        assert STALE_REPORT + leftover in again.stderr
    assert temps_of(path) == []
    assert sha256(path) == model["new"]


def test_interrupt_removes_temp(model: dict, tmp_path: Path, workdir: Path) -> None:
    """Ctrl-C (SIGINT) in the middle of the copy removes the temporary file before the process exits."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    child = start_cli([*SET_POST, str(path)], workdir, stop_at="bytes:300000")
    try:
        assert child.stopped
        assert len(temps_of(path)) == 1
        os.kill(child.pid, signal.SIGINT)
        result = child.resume()
    finally:
        child.cleanup()
    assert result.code not in (0, -signal.SIGINT)
    assert sha256(path) == model["old"]
    assert temps_of(path) == []


# -- two edits at once ---------------------------------------------------------------------------------


def test_second_edit_fails_while_locked(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    first = start_cli([*SET_POST, str(path)], workdir, stop_at="written")
    try:
        assert first.stopped
        live_temp = temps_of(path)
        second = run_cli(["set-mtp-source", "--pre-norm", str(path)], workdir)
        assert second.code == 1
        assert "another gguftools process is editing this file" in second.stderr
        assert sha256(path) == model["old"]
        # the second run must not take the live temporary file for a leftover
        assert temps_of(path) == live_temp
        assert STALE_REPORT not in second.stderr
        finished = first.resume()
    finally:
        first.cleanup()
    assert finished.code == 0, finished.stderr
    assert sha256(path) == model["new"]
    assert temps_of(path) == []


def test_edits_in_turn_both_apply(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    assert run_cli([*SET_POST, str(path)], workdir).code == 0
    result = run_cli(["set-mtp-source", "--pre-norm", str(path)], workdir)
    assert result.code == 0, result.stderr
    assert "post_norm -> pre_norm" in result.stdout


def test_lock_held_until_edit_ends(model: dict, tmp_path: Path, workdir: Path) -> None:
    """The renamed file is the temporary file, still locked by its writer until the edit has finished."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    first = start_cli([*SET_POST, str(path)], workdir, stop_at="after-rename")
    try:
        assert first.stopped
        second = run_cli(["set-mtp-source", "--pre-norm", str(path)], workdir)
        finished = first.resume()
    finally:
        first.cleanup()
    assert second.code == 1
    assert "another gguftools process is editing this file" in second.stderr
    assert finished.code == 0, finished.stderr
    assert sha256(path) == model["new"]

    third = run_cli(["set-mtp-source", "--pre-norm", str(path)], workdir)
    assert third.code == 0, third.stderr
    assert "post_norm -> pre_norm" in third.stdout


def test_cleanup_skips_live_temp(model: dict, tmp_path: Path, workdir: Path) -> None:
    """Two edits to one new -o path: the second runs a cleanup while the first is still writing."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    output = tmp_path / "out.gguf"
    first = start_cli([*SET_POST, str(path), "-o", str(output)], workdir, stop_at="written")
    try:
        assert first.stopped
        live_temp = temps_of(output)
        assert len(live_temp) == 1
        second = run_cli([*SET_POST, str(path), "-o", str(output)], workdir)
        assert second.code == 0, second.stderr
        assert STALE_REPORT not in second.stderr
        assert set(live_temp) <= set(temps_of(output))
        finished = first.resume()
    finally:
        first.cleanup()
    assert finished.code == 1
    assert "the output file appeared during the edit" in finished.stderr
    assert sha256(output) == model["new"]
    assert temps_of(output) == []


# -- full disk -----------------------------------------------------------------------------------------


def enospc_after(limit: int, original, count_of, shorten):
    """Wrap a write-like function so that it writes at most ``limit`` bytes in all, then fails with ENOSPC.

    ``count_of`` returns the byte count that a call requests. The call that crosses the limit writes only
    the bytes up to it, as the kernel does when a disk fills.
    """
    written = 0

    def wrapper(*args):
        nonlocal written
        if written >= limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        allowed = min(count_of(args), limit - written)
        count = original(*shorten(args, allowed))
        written += count
        return count

    return wrapper


def shorten_write(args: tuple, allowed: int) -> tuple:
    fd, data = args
    return fd, memoryview(data)[:allowed]


def shorten_copy(args: tuple, allowed: int) -> tuple:
    return (args[0], args[1], allowed, *args[3:])


@pytest.mark.parametrize("limit", [0, 4096, 600_000])
def test_injected_enospc_during_write(limit: int, model: dict, tmp_path: Path, workdir: Path, monkeypatch) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    before = os.stat(path)
    monkeypatch.setattr(os, "write", enospc_after(limit, os.write, lambda args: len(args[1]), shorten_write))
    if hasattr(os, "copy_file_range"):
        copy = enospc_after(limit, os.copy_file_range, lambda args: args[2], shorten_copy)
        monkeypatch.setattr(os, "copy_file_range", copy)
    result = run_cli([*SET_POST, str(path)], workdir)
    monkeypatch.undo()

    assert result.code == 1
    assert "no space left on the device" in result.stderr
    assert "the original is unchanged" in result.stderr
    assert sha256(path) == model["old"]
    assert temps_of(path) == []
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_injected_enospc_at_fsync(model: dict, tmp_path: Path, workdir: Path, monkeypatch) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    result = run_cli([*SET_POST, str(path)], workdir)
    monkeypatch.undo()

    assert result.code == 1
    assert "no space left on the device" in result.stderr
    assert sha256(path) == model["old"]
    assert temps_of(path) == []


def test_copy_without_copy_file_range(model: dict, tmp_path: Path, workdir: Path, monkeypatch) -> None:
    """Where the kernel cannot copy between the files (EXDEV, EOPNOTSUPP), pread and write do the copy."""
    path = copy_model(model["path"], tmp_path / "model.gguf")

    def unsupported(*args) -> int:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "copy_file_range", unsupported, raising=False)
    result = run_cli([*SET_POST, str(path)], workdir)
    monkeypatch.undo()
    assert result.code == 0, result.stderr
    assert sha256(path) == model["new"]


@contextlib.contextmanager
def mounted_tmpfs(mount_point: Path, options: str):
    """Mount a tmpfs for the test and unmount it afterwards; skip when mounting is not permitted."""
    mount_point.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "gguftools-test", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip() or 'mount failed'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def fill_disk(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as filler:
        block = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                filler.write(block)


def test_small_filesystem_too_small(model: dict, tmp_path: Path, workdir: Path) -> None:
    """The free-space check rejects the edit before writing anything."""
    with mounted_tmpfs(tmp_path / "disk", "size=4m") as disk:
        path = copy_model(model["path"], disk / "model.gguf")
        # leave about half the new file's size free
        with open(disk / "ballast", "wb") as ballast:
            ballast.write(b"\0" * (4 * 1024 * 1024 - path.stat().st_size * 3 // 2))
        result = run_cli([*SET_POST, str(path)], workdir)
        assert result.code == 1
        assert "no space left on the device: the new file needs" in result.stderr
        assert sha256(path) == model["old"]
        assert temps_of(path) == []


def test_small_filesystem_fills_during_write(model: dict, tmp_path: Path, workdir: Path) -> None:
    """Another process fills the disk in the middle of the copy: a real ENOSPC from the kernel."""
    with mounted_tmpfs(tmp_path / "disk", "size=4m") as disk:
        path = copy_model(model["path"], disk / "model.gguf")
        child = start_cli([*SET_POST, str(path)], workdir, stop_at="bytes:200000")
        try:
            assert child.stopped
            fill_disk(disk)
            result = child.resume()
        finally:
            child.cleanup()
        assert result.code == 1
        assert "no space left on the device" in result.stderr
        assert sha256(path) == model["old"]
        assert temps_of(path) == []


# -- read-only file and folder -------------------------------------------------------------------------


def test_read_only_file_rejected(model: dict, tmp_path: Path, workdir: Path) -> None:
    """A file without write permission bits is left alone, also for root, whom the bits do not bind."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    path.chmod(0o444)
    result = run_cli([*SET_POST, str(path)], workdir)
    assert result.code == 1
    assert "the file is read-only (mode 0444)" in result.stderr
    assert sha256(path) == model["old"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert temps_of(path) == []


def test_immutable_file_rejected(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    chattr = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
    if chattr.returncode != 0:
        pytest.skip(f"chattr +i is not available here ({chattr.stderr.strip()})")
    try:
        result = run_cli([*SET_POST, str(path)], workdir)
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert result.code == 1
    assert "permission denied" in result.stderr
    assert sha256(path) == model["old"]


def test_read_only_filesystem(model: dict, tmp_path: Path, workdir: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "size=8m") as disk:
        path = copy_model(model["path"], disk / "model.gguf")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = run_cli([*SET_POST, str(path)], workdir)
        assert result.code == 1
        assert "read-only file system" in result.stderr
        assert sha256(path) == model["old"]


@pytest.fixture
def shared_folder() -> Path:
    """A folder that an unprivileged user can reach (pytest's own tmp_path is private to root).

    It is made in /tmp rather than in $TMPDIR, which may sit in a folder that only root can enter.
    """
    folder = Path(tempfile.mkdtemp(prefix="gguftools-perm-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for child in folder.rglob("*"):
            with contextlib.suppress(OSError):
                child.chmod(0o755 if child.is_dir() else 0o644)
        folder.chmod(0o755)
        shutil.rmtree(folder)


def unprivileged_user() -> tuple[int, int] | None:
    """Return the unprivileged user to run as when the tests run as root, whom permission bits do not bind."""
    return NOBODY if os.geteuid() == 0 else None


def test_read_only_folder(model: dict, shared_folder: Path, workdir: Path) -> None:
    folder = shared_folder / "models"
    folder.mkdir()
    path = copy_model(model["path"], folder / "model.gguf")
    user = unprivileged_user()
    if user is not None:
        os.chown(folder, *user)
        os.chown(path, *user)
    folder.chmod(0o555)
    result = run_cli([*SET_POST, str(path)], workdir, user=user)
    assert result.code == 1
    assert f"cannot create a temporary file in {folder}: permission denied" in result.stderr
    assert sha256(path) == model["old"]


def test_file_of_another_user(model: dict, shared_folder: Path, workdir: Path) -> None:
    """A file the user may not write is rejected even when the folder would let the edit replace it."""
    user = unprivileged_user()
    if user is None:
        pytest.skip("needs root to create a file that belongs to another user")
    folder = shared_folder / "models"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    path = copy_model(model["path"], folder / "model.gguf")
    path.chmod(0o644)  # owned by root, writable by root only
    result = run_cli([*SET_POST, str(path)], workdir, user=user)
    assert result.code == 1
    assert "permission denied: the file is not writable by this user" in result.stderr
    assert sha256(path) == model["old"]


# -- another process changes the file ------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["temp-created", "bytes:300000", "written", "checked"])
def test_truncated_while_read(stop: str, model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    child = start_cli([*SET_POST, str(path)], workdir, stop_at=stop)
    try:
        assert child.stopped
        os.truncate(path, path.stat().st_size // 2)
        truncated = sha256(path)
        result = child.resume()
    finally:
        child.cleanup()
    # a clear error, not SIGBUS from the memory map
    assert result.code == 1, result
    assert "another process" in result.stderr
    assert sha256(path) == truncated
    assert temps_of(path) == []


@pytest.mark.parametrize("stop", ["temp-created", "written", "checked"])
def test_replaced_while_read(stop: str, model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    replacement = tmp_path / "replacement.gguf"
    replacement.write_bytes(b"written by another program")
    child = start_cli([*SET_POST, str(path)], workdir, stop_at=stop)
    try:
        assert child.stopped
        os.replace(replacement, path)
        result = child.resume()
    finally:
        child.cleanup()
    assert result.code == 1
    assert "another process replaced or removed the file during the edit; nothing was written" in result.stderr
    assert path.read_bytes() == b"written by another program"
    assert temps_of(path) == []


def test_written_in_place_while_read(model: dict, tmp_path: Path, workdir: Path) -> None:
    """A same-size write by another program is caught by the modification time."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    child = start_cli([*SET_POST, str(path)], workdir, stop_at="written")
    try:
        assert child.stopped
        with open(path, "r+b") as handle:
            handle.seek(-16, os.SEEK_END)
            handle.write(b"\xff" * 16)
        changed = sha256(path)
        result = child.resume()
    finally:
        child.cleanup()
    assert result.code == 1
    assert "another process changed the file while it was read" in result.stderr
    assert sha256(path) == changed
    assert temps_of(path) == []


# -- links and file attributes -------------------------------------------------------------------------


def test_symlink_stays_a_link(model: dict, tmp_path: Path, workdir: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    target = copy_model(model["path"], store / "model.gguf")
    (tmp_path / "inner.gguf").symlink_to("store/model.gguf")
    link = tmp_path / "model-link.gguf"
    link.symlink_to("inner.gguf")
    result = run_cli([*SET_POST, str(link)], workdir)
    assert result.code == 0, result.stderr
    assert link.is_symlink()
    assert os.readlink(link) == "inner.gguf"
    assert os.readlink(tmp_path / "inner.gguf") == "store/model.gguf"
    assert sha256(target) == model["new"]
    assert temps_of(target) == []


def test_dangling_symlink_not_found(tmp_path: Path, workdir: Path) -> None:
    link = tmp_path / "model.gguf"
    link.symlink_to("missing.gguf")
    result = run_cli([*SET_POST, str(link)], workdir)
    assert result.code == 1
    assert "file not found" in result.stderr
    assert link.is_symlink()
    assert not (tmp_path / "missing.gguf").exists()


def test_hard_link_keeps_old_content(model: dict, tmp_path: Path, workdir: Path) -> None:
    """The edit writes a new inode: the path gets the new file and other hard links keep the old one."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    other = tmp_path / "other-name.gguf"
    os.link(path, other)
    result = run_cli([*SET_POST, str(path)], workdir)
    assert result.code == 0, result.stderr
    assert sha256(path) == model["new"]
    assert sha256(other) == model["old"]
    assert other.stat().st_nlink == 1
    assert "had 1 other hard link(s); they still show the old file" in result.stderr


def test_permissions_kept(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    path.chmod(0o640 | stat.S_ISGID)
    result = run_cli([*SET_POST, str(path)], workdir)
    assert result.code == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 | stat.S_ISGID


def test_owner_kept(model: dict, tmp_path: Path, workdir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file another owner")
    path = copy_model(model["path"], tmp_path / "model.gguf")
    os.chown(path, 4321, 8765)
    result = run_cli([*SET_POST, str(path)], workdir)
    assert result.code == 0, result.stderr
    status = path.stat()
    assert (status.st_uid, status.st_gid) == (4321, 8765)


def test_extended_attributes_kept(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    try:
        os.setxattr(path, "user.gguftools-test", b"origin=hub")
    except OSError as error:
        pytest.skip(f"user extended attributes are not supported here ({error.strerror})")
    result = run_cli([*SET_POST, str(path)], workdir)
    assert result.code == 0, result.stderr
    assert os.getxattr(path, "user.gguftools-test") == b"origin=hub"


def test_times_updated_by_default(model: dict, tmp_path: Path, workdir: Path) -> None:
    """The content changed, so the modification time shows it (rsync, make and backups rely on it)."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    os.utime(path, ns=(1_000_000_000_123_456_789, 1_000_000_000_987_654_321))
    result = run_cli([*SET_POST, str(path)], workdir)
    assert result.code == 0, result.stderr
    assert path.stat().st_mtime_ns > 1_000_000_000_987_654_321


def test_keep_mtime(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    os.utime(path, ns=(1_000_000_000_123_456_789, 1_000_000_000_987_654_321))
    result = run_cli([*SET_POST, "--keep-mtime", str(path)], workdir)
    assert result.code == 0, result.stderr
    status = path.stat()
    assert status.st_mtime_ns == 1_000_000_000_987_654_321
    # the edit read the file, so the access time is the time of the edit
    assert status.st_atime_ns > 1_000_000_000_987_654_321
    assert sha256(path) == model["new"]


def test_no_change_leaves_file_untouched(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    assert run_cli([*SET_POST, str(path)], workdir).code == 0
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = path.stat()
    result = run_cli([*SET_POST, str(path)], workdir)
    assert result.code == 0, result.stderr
    assert "already post_norm; nothing to do" in result.stdout
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_no_change_still_removes_leftover(model: dict, tmp_path: Path, workdir: Path) -> None:
    """A run with nothing to write still cleans up after an interrupted edit and reports it."""
    path = copy_model(model["path"], tmp_path / "model.gguf")
    assert run_cli([*SET_POST, str(path)], workdir).code == 0
    child = start_cli(["set-mtp-source", "--pre-norm", str(path)], workdir, stop_at="written")
    try:
        assert child.stopped
        child.kill()
    finally:
        child.cleanup()
    leftovers = temps_of(path)
    assert len(leftovers) == 1

    result = run_cli([*SET_POST, str(path)], workdir)
    assert result.code == 0, result.stderr
    assert "already post_norm; nothing to do" in result.stdout
    assert STALE_REPORT + leftovers[0] in result.stderr
    assert temps_of(path) == []
    assert sha256(path) == model["new"]


def test_dry_run_reports_leftover(model: dict, tmp_path: Path, workdir: Path) -> None:
    path = copy_model(model["path"], tmp_path / "model.gguf")
    child = start_cli([*SET_POST, str(path)], workdir, stop_at="written")
    try:
        assert child.stopped
        child.kill()
    finally:
        child.cleanup()
    leftovers = temps_of(path)
    result = run_cli([*SET_POST, "--dry-run", str(path)], workdir)
    assert result.code == 0
    assert f"a temporary file left by an interrupted edit exists: {leftovers[0]}" in result.stderr
    assert temps_of(path) == leftovers
    assert sha256(path) == model["old"]
