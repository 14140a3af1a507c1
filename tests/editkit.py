"""Helpers for the edit-safety tests: model files, hashes, and the CLI run in a child process.

``run_cli`` forks the test process and runs the click command in the child, so each of the many
interruption trials costs milliseconds instead of a fresh interpreter. The child's stdout and stderr go to
files that the parent reads. With ``stop_at`` the child stops itself with SIGSTOP at that point of the edit
(the test hook ``GGUFTOOLS_TEST_STOP_AT`` in ``gguftools.edit``), and the test then kills it with SIGKILL
or lets it go on with SIGCONT.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import os
import shutil
import signal
import sys
from pathlib import Path

from ggufbuild import write_gguf

from gguftools.cli import cli
from gguftools.edit import TEST_STOP_VARIABLE, temp_pattern

FIXTURES = Path(__file__).parent / "fixtures"
# trained fixtures that verify --write can decide on, smallest first; tools/make_fixtures.py builds them
TRAINED_CANDIDATES = (FIXTURES / "qwen35-mtp-post.q8_0.gguf", FIXTURES / "qwen35-mtp-post.f32.gguf")
TRAINED_FIXTURE = next((path for path in TRAINED_CANDIDATES if path.exists()), TRAINED_CANDIDATES[-1])


def sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_model(path: Path) -> Path:
    """Write a model with MTP tensors, about 1.3 MB, so that byte-level trials fall in distinct 4 KiB chunks."""
    return write_gguf(path, embed=256, vocab=64)


def temps_of(path: str | os.PathLike[str]) -> list[str]:
    """Return the temporary files of edits of ``path`` that exist now."""
    return sorted(glob.glob(temp_pattern(os.path.realpath(path))))


@dataclasses.dataclass
class Run:
    """A finished CLI run: its exit code (negative for a signal), stdout and stderr."""

    code: int
    stdout: str
    stderr: str


class Child:
    """A CLI run in a forked child, stopped at a test-hook point or finished."""

    def __init__(self, pid: int, out_path: str, err_path: str) -> None:
        self.pid = pid
        self.out_path = out_path
        self.err_path = err_path
        self.run: Run | None = None
        _, status = os.waitpid(pid, os.WUNTRACED)
        self.stopped = os.WIFSTOPPED(status)
        if not self.stopped:
            self._finish(status)

    def _finish(self, status: int) -> None:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        with open(self.out_path, encoding="utf-8") as out, open(self.err_path, encoding="utf-8") as err:
            self.run = Run(code, out.read(), err.read())

    def kill(self) -> Run:
        """Kill the stopped child with SIGKILL and return its run."""
        return self._end(signal.SIGKILL)

    def resume(self) -> Run:
        """Let the stopped child go on to its end and return its run."""
        return self._end(signal.SIGCONT)

    def _end(self, sig: int) -> Run:
        assert self.stopped, "the child did not stop at the requested point"
        self.stopped = False
        os.kill(self.pid, sig)
        _, status = os.waitpid(self.pid, 0)
        self._finish(status)
        assert self.run is not None
        return self.run

    def cleanup(self) -> None:
        if self.stopped:
            self.kill()


def start_cli(
    args: list[str], workdir: Path, stop_at: str | None = None, user: tuple[int, int] | None = None
) -> Child:
    """Fork and run ``gguftools ARGS`` in the child; return once it has stopped at ``stop_at`` or ended.

    ``user`` runs the child as that (uid, gid), which needs root.
    """
    out_path = str(workdir / f"cli-{len(os.listdir(workdir))}.out")
    err_path = out_path[:-4] + ".err"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 70
        try:
            out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", write_through=True)
            if user is not None:
                os.setgroups([])
                os.setgid(user[1])
                os.setuid(user[0])
            if stop_at is None:
                os.environ.pop(TEST_STOP_VARIABLE, None)
            else:
                os.environ[TEST_STOP_VARIABLE] = stop_at
            try:
                cli.main(args=args, prog_name="gguftools", standalone_mode=True)
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException as error:  # noqa: BLE001 - report anything in the child's stderr
            print(f"child failed: {error!r}", file=sys.stderr)
        finally:
            os._exit(code)
    return Child(pid, out_path, err_path)


def run_cli(args: list[str], workdir: Path, user: tuple[int, int] | None = None) -> Run:
    """Run ``gguftools ARGS`` in a forked child to its end."""
    child = start_cli(args, workdir, user=user)
    assert child.run is not None, "the child stopped although no stop point was set"
    return child.run


def copy_model(source: Path, destination: Path) -> Path:
    shutil.copyfile(source, destination)
    return destination


def model_versions(source: Path, folder: Path, args: list[str]) -> dict[str, object]:
    """Return ``source``, the sha256 of it and of its version after ``gguftools ARGS``, and that version's size."""
    edited = copy_model(source, folder / "edited.gguf")
    result = run_cli([*args, str(edited)], folder)
    assert result.code == 0, result.stderr
    return {"path": source, "old": sha256(source), "new": sha256(edited), "new_size": edited.stat().st_size}
