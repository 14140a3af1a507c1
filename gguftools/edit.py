"""Safe edits of a GGUF file's metadata.

An edit never writes into the existing file. The new file is written beside the target under a temporary
name, flushed to disk, opened again and compared with the source, and only then renamed over the target,
after which the folder is flushed. A crash at any point leaves the path holding either the old file or the
complete new one, plus at most a temporary file that the next edit removes and reports.

Rules that the README's safety section states for users:

* Locking: an edit takes an exclusive ``flock`` on the file it replaces and fails at once if another
  gguftools process holds it. Each temporary file is locked by the process writing it, so a cleanup
  removes only temporary files whose writer has died.
* Another process: the source is read through its file descriptor (``copy_file_range``/``pread``), never
  through the memory map, so a truncation raises ``EditError`` instead of SIGBUS. Just before the rename the
  edit checks that the source kept its size and modification time and that the path still names the inode
  it read. If either check fails, the edit writes nothing.
* Metadata: a symbolic link stays a link and its target is replaced. The new file gets the old one's
  permission bits, owner and group (the owner only when running as root) and extended attributes. The
  modification time becomes the time of the edit unless ``keep_mtime`` is set. The access time is always
  the time of the edit, because the edit reads the file. A hard link is not kept: the other names still see
  the old file, because the new file is a new inode.
* Read-only: a file with no write permission bit, or one the user may not write, is rejected even for
  root, because the edit would otherwise replace it through the folder's permission.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import glob
import os
import secrets
import signal
import stat
import time
from collections.abc import Callable, Iterator

from gguftools.container.reader import GGUFFile
from gguftools.container.writer import COPY_CHUNK, NewValue, check_editable, copy_range, new_header, read_exact
from gguftools.errors import EditError, GGUFToolsError

TEMP_MARKER = ".gguftools-"
VERIFY_SPAN = 1024 * 1024
VERIFY_SPANS = 8

# Test hook, inert unless the variable is set: the process stops itself (SIGSTOP) at the named step, or
# after the running byte count of the new file reaches N for the value "bytes:N". A test then kills it with
# SIGKILL or lets it go on with SIGCONT. Copies run in 4 KiB chunks while a byte stop is set.
TEST_STOP_VARIABLE = "GGUFTOOLS_TEST_STOP_AT"
TEST_CHUNK = 4096
STEPS = ("locked", "temp-created", "written", "checked", "before-rename", "after-rename", "done")


@dataclasses.dataclass
class EditResult:
    """The outcome of an edit: the file written, the leftover temporary files removed, and notes for the user."""

    path: str
    stale_removed: list[str]
    other_links: int = 0  # hard links to the old file that still show the old content
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Plan:
    """The source and target paths of an edit, resolved before anything is opened."""

    source: str  # real path of the file read
    target: str  # real path of the file written (the source for an edit in place)
    in_place: bool
    replace_existing: bool  # the target exists and will be replaced


def _stop_here(step: str) -> None:
    if os.environ.get(TEST_STOP_VARIABLE) == step:
        os.kill(os.getpid(), signal.SIGSTOP)


def _byte_stopper() -> Callable[[int], None] | None:
    requested = os.environ.get(TEST_STOP_VARIABLE, "")
    if not requested.startswith("bytes:"):
        return None
    limit = int(requested.removeprefix("bytes:"))
    stopped = False

    def progress(written: int) -> None:
        nonlocal stopped
        if not stopped and written >= limit:
            stopped = True
            os.kill(os.getpid(), signal.SIGSTOP)

    return progress


# -- temporary files -----------------------------------------------------------------------------------


def temp_pattern(path: str) -> str:
    """Return the glob pattern of the temporary files an edit of ``path`` creates."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{glob.escape(name)}{TEMP_MARKER}*.tmp")


def remove_stale_temps(path: str) -> list[str]:
    """Remove the temporary files that interrupted edits of ``path`` left; return their paths.

    A temporary file whose writer is alive is locked by it and is left alone.
    """
    removed = []
    for stale in sorted(glob.glob(temp_pattern(path))):
        try:
            fd = os.open(stale, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            if _same_inode(os.fstat(fd), os.lstat(stale)):
                os.unlink(stale)
                removed.append(stale)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _create_temp(target: str) -> tuple[str, int]:
    """Create and lock a new temporary file beside ``target``; return its path and descriptor."""
    folder, name = os.path.split(target)
    while True:
        temp_path = os.path.join(folder, f".{name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise EditError(f"cannot create a temporary file in {folder or '.'}: {_reason(error)}", target) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleanup in another process may have removed the file between its creation and the lock.
        try:
            if _same_inode(os.fstat(fd), os.lstat(temp_path)):
                return temp_path, fd
        except FileNotFoundError:
            pass
        os.close(fd)


# -- checks and locks ----------------------------------------------------------------------------------


def _same_inode(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _reason(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "no space left on the device"
    if error.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.EROFS:
        return "read-only file system"
    return error.strerror or str(error)


def _regular_file_stat(path: str, role: str) -> os.stat_result | None:
    """Stat ``path``; return None when it does not exist, raise EditError when it is not a regular file."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise EditError(f"cannot read the {role}: {_reason(error)}", path) from None
    if not stat.S_ISREG(status.st_mode):
        raise EditError(f"the {role} is not a regular file", path)
    return status


def _check_writable(path: str, status: os.stat_result) -> None:
    """Reject a file that the user could not write in place, although the edit only needs the folder."""
    mode = stat.S_IMODE(status.st_mode)
    if mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0:
        raise EditError(
            f"the file is read-only (mode {mode:04o}); make it writable (chmod u+w) or write a copy with -o",
            path,
        )
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        raise EditError("the file is on a read-only file system; write a copy elsewhere with -o", path)
    if not os.access(path, os.W_OK):
        raise EditError(
            "permission denied: the file is not writable by this user (or is immutable, see lsattr)", path
        )


def _open_locked(path: str) -> int:
    """Open ``path`` and take its exclusive ``flock`` without waiting; return the descriptor."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise EditError("file not found", path) from None
        except OSError as error:
            raise EditError(f"cannot open the file: {_reason(error)}", path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EditError(
                "another gguftools process is editing this file (its lock is held); try again when it has finished",
                path,
            ) from None
        # The lock belongs to the inode that was opened. If another edit renamed a new file over the path in
        # the meantime, lock that one instead.
        try:
            if _same_inode(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise EditError("the file keeps being replaced by another process; try again later", path)


def _plan(path: str, output: str | None, overwrite_output: bool) -> _Plan:
    source = os.path.realpath(path)
    source_status = _regular_file_stat(source, "file")
    if source_status is None:
        raise EditError("file not found", path)
    if output is None or os.path.realpath(output) == source:
        _check_writable(source, source_status)
        return _Plan(source, source, in_place=True, replace_existing=True)

    target = os.path.realpath(output)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise EditError(f"the output folder {folder} does not exist", output)
    if os.path.isdir(target):
        raise EditError("the output is a folder; name a file", output)
    target_status = _regular_file_stat(target, "output")
    if target_status is None:
        return _Plan(source, target, in_place=False, replace_existing=False)
    if not overwrite_output:
        raise EditError("the output file exists; pass --force to replace it", output)
    _check_writable(target, target_status)
    return _Plan(source, target, in_place=False, replace_existing=True)


def _check_unchanged(source: GGUFFile, opened: os.stat_result, plan: _Plan, target_lock: int | None) -> None:
    """Raise EditError if another process changed the source, or moved another file to the target path."""
    assert source._file is not None  # noqa: SLF001
    now = os.fstat(source._file.fileno())  # noqa: SLF001
    if now.st_size != opened.st_size or now.st_mtime_ns != opened.st_mtime_ns:
        raise EditError(
            "another process changed the file while it was read (size or modification time differs); "
            "nothing was written",
            source.path,
        )
    if target_lock is None:
        return
    try:
        current = os.stat(plan.target)
    except FileNotFoundError:
        current = None
    if current is None or not _same_inode(current, os.fstat(target_lock)):
        raise EditError(
            "another process replaced or removed the file during the edit; nothing was written", plan.target
        )


def _check_written(source: GGUFFile, temp_path: str, changes: dict[str, NewValue | None]) -> None:
    """Open the new file and compare it with the source and the intended changes; raise EditError on a difference."""
    try:
        written = GGUFFile(temp_path)
    except GGUFToolsError as error:
        raise EditError(f"the new file does not read back: {error.message}", source.path) from None
    try:
        old_header = read_exact(source, 0, source.tensor_infos_end)
        new_bytes = written._map  # noqa: SLF001 - our own temporary file, which no other process writes
        assert new_bytes is not None

        expected_keys = [key for key in source.metadata if changes.get(key, True) is not None]
        expected_keys += [key for key, value in changes.items() if key not in source.metadata and value is not None]
        if list(written.metadata) != expected_keys:
            raise EditError("the new file's keys differ from the intended ones", source.path)
        for key, field in written.metadata.items():
            if key in changes:
                value = changes[key]
                assert value is not None
                if field.value_type != value.value_type or field.value != value.value:
                    raise EditError(f"key {key!r} reads back as {field.value!r}", source.path)
                continue
            old = source.metadata[key]
            if old_header[old.start : old.end] != new_bytes[field.start : field.end]:
                raise EditError(f"key {key!r} changed while copying", source.path)

        old_tensors = [(t.raw_name, t.ggml_shape, t.type_id, t.offset) for t in source.tensors.values()]
        new_tensors = [(t.raw_name, t.ggml_shape, t.type_id, t.offset) for t in written.tensors.values()]
        if old_tensors != new_tensors:
            raise EditError("the new file's tensor infos differ from the original's", source.path)

        data_size = source.file_size - source.data_offset
        if written.file_size - written.data_offset != data_size:
            raise EditError("the new file's tensor data has a different size", source.path)
        for start in _sample_offsets(data_size):
            length = min(VERIFY_SPAN, data_size - start)
            old_span = read_exact(source, source.data_offset + start, length)
            new_span = new_bytes[written.data_offset + start : written.data_offset + start + length]
            if old_span != new_span:
                raise EditError(f"tensor data differs at data offset {start}", source.path)
    finally:
        written.close()


def _sample_offsets(size: int) -> list[int]:
    """Return the starts of the data spans that the read-back compares: first, last and evenly between."""
    if size <= VERIFY_SPAN * VERIFY_SPANS:
        return list(range(0, size, VERIFY_SPAN))
    last = size - VERIFY_SPAN
    return sorted({last * index // (VERIFY_SPANS - 1) for index in range(VERIFY_SPANS)})


def _check_free_space(folder: str, needed: int, target: str) -> None:
    try:
        fs = os.statvfs(folder)
    except OSError:
        return
    # root may use the blocks reserved for it, other users only the available ones
    free_blocks = fs.f_bfree if os.geteuid() == 0 else fs.f_bavail
    free = free_blocks * fs.f_frsize
    if free < needed:
        raise EditError(
            f"no space left on the device: the new file needs {needed} bytes and {folder} has {free} free; "
            f"the original is unchanged",
            target,
        )


# -- file attributes -----------------------------------------------------------------------------------


def _copy_attributes(fd: int, model: os.stat_result, model_path: str, copy_owner: bool) -> list[str]:
    """Give the new file the permission bits, owner, group and extended attributes of ``model_path``.

    Owner, group and extended attributes are copied on a best-effort basis; what could not be copied is
    returned as warnings.
    """
    warnings = []
    if copy_owner and (model.st_uid, model.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, model.st_uid if os.geteuid() == 0 else -1, model.st_gid)
        except OSError as error:
            warnings.append(f"the owner and group could not be kept ({_reason(error)})")
    # chmod after chown, because chown clears the set-user-ID and set-group-ID bits
    os.fchmod(fd, stat.S_IMODE(model.st_mode))
    if copy_owner and hasattr(os, "listxattr"):
        try:
            names = os.listxattr(model_path)
        except OSError:
            names = []
        failed = []
        for name in names:
            try:
                os.setxattr(fd, name, os.getxattr(model_path, name))
            except OSError:
                failed.append(name)
        if failed:
            warnings.append(f"extended attributes not kept: {', '.join(failed)}")
    return warnings


def _fsync_folder(folder: str) -> str | None:
    """Flush the folder so that the rename survives a power cut; return a warning if that failed."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        return f"the folder {folder} could not be flushed after the rename ({_reason(error)})"
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            return f"the folder {folder} could not be flushed after the rename ({_reason(error)})"
    finally:
        os.close(fd)
    return None


def _publish(temp_path: str, plan: _Plan) -> None:
    """Move the finished temporary file to the target path."""
    if plan.replace_existing:
        os.replace(temp_path, plan.target)
        return
    # A hard link refuses to replace a file that appeared in the meantime, where a rename would not.
    try:
        os.link(temp_path, plan.target)
    except FileExistsError:
        raise EditError("the output file appeared during the edit; pass --force to replace it", plan.target) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(plan.target):
            raise EditError("the output file appeared during the edit; pass --force to replace it", plan.target) from None
        os.replace(temp_path, plan.target)
        return
    os.unlink(temp_path)


# -- the edit ------------------------------------------------------------------------------------------


def set_metadata(
    path: str,
    changes: dict[str, NewValue | None],
    output: str | None = None,
    overwrite_output: bool = False,
    keep_mtime: bool = False,
) -> EditResult:
    """Write ``path`` with the keys in ``changes`` set, in place or to ``output``; see the module docstring.

    ``overwrite_output`` allows replacing an existing ``output``. ``keep_mtime`` gives the new file the
    modification time of the file it replaces (of ``path`` for a new output). Raises ``EditError`` when the
    edit is rejected or fails, and the file at the target path is then the one that was there before.
    """
    plan = _plan(path, output, overwrite_output)
    target_lock = _open_locked(plan.target) if plan.replace_existing else None
    temp_path: str | None = None
    temp_fd: int | None = None
    try:
        _stop_here("locked")
        stale_removed = remove_stale_temps(plan.target)
        attribute_model = plan.target if plan.replace_existing else plan.source
        try:
            model_status = os.stat(attribute_model)
        except OSError as error:
            raise EditError(f"cannot read the file: {_reason(error)}", attribute_model) from None
        other_links = model_status.st_nlink - 1 if plan.replace_existing else 0
        folder = os.path.dirname(plan.target)

        with _open_source(plan, target_lock) as (source, opened):
            header = new_header(source, changes)
            _check_free_space(folder, len(header) + source.file_size - source.data_offset, plan.target)

            temp_path, temp_fd = _create_temp(plan.target)
            _stop_here("temp-created")
            warnings = _write_temp(source, header, temp_fd, model_status, attribute_model, plan)
            _stop_here("written")

            _check_unchanged(source, opened, plan, target_lock)
            _check_written(source, temp_path, changes)
            if keep_mtime:
                _set_mtime(temp_fd, model_status.st_mtime_ns, plan.target)
            _stop_here("checked")

            # The last look at the source and the target path, as close to the rename as it can be.
            _check_unchanged(source, opened, plan, target_lock)
            _stop_here("before-rename")
            try:
                _publish(temp_path, plan)
            except OSError as error:
                raise EditError(
                    f"replacing the file failed: {_reason(error)}; the original is unchanged", plan.target
                ) from None
            temp_path = None

        _stop_here("after-rename")
        folder_warning = _fsync_folder(folder)
        if folder_warning is not None:
            warnings.append(folder_warning)
        _stop_here("done")
        return EditResult(plan.target, stale_removed, other_links, warnings)
    finally:
        if temp_fd is not None:
            os.close(temp_fd)
        if temp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)
        if target_lock is not None:
            os.close(target_lock)


def check_edit(
    path: str, changes: dict[str, NewValue | None], output: str | None = None, overwrite_output: bool = False
) -> None:
    """Raise EditError if ``set_metadata`` with the same arguments would reject the edit; write nothing.

    Runs the checks of the source and target paths and the writer's ``check_editable``. It does not take the
    lock, so an edit running in another process is noticed only by the real edit.
    """
    plan = _plan(path, output, overwrite_output)
    source = GGUFFile(plan.source)
    try:
        check_editable(source, changes)
    finally:
        source.close()


@contextlib.contextmanager
def _open_source(plan: _Plan, target_lock: int | None) -> Iterator[tuple[GGUFFile, os.stat_result]]:
    """Open the source and yield it with its status at opening; for an edit in place, it must be the locked inode."""
    source = GGUFFile(plan.source)
    try:
        assert source._file is not None  # noqa: SLF001 - the edit reads the file through the reader's descriptor
        opened = os.fstat(source._file.fileno())  # noqa: SLF001
        if plan.in_place and target_lock is not None and not _same_inode(opened, os.fstat(target_lock)):
            raise EditError("another process replaced the file while it was opened; nothing was written", plan.source)
        yield source, opened
    finally:
        source.close()


def _write_temp(
    source: GGUFFile, header: bytes, fd: int, model_status: os.stat_result, attribute_model: str, plan: _Plan
) -> list[str]:
    """Write the new file, give it the attributes of the file it replaces and flush it; return warnings."""
    progress = _byte_stopper()
    chunk_size = TEST_CHUNK if progress is not None else COPY_CHUNK
    try:
        view = memoryview(header)
        while view:
            view = view[os.write(fd, view) :]
        if progress is not None:
            progress(len(header))
        copy_range(source, source.data_offset, source.file_size, fd, len(header), progress, chunk_size)
        warnings = _copy_attributes(fd, model_status, attribute_model, plan.replace_existing)
        os.fsync(fd)
    except OSError as error:
        raise EditError(f"writing the new file failed: {_reason(error)}; the original is unchanged", plan.target) from None
    return warnings


def _set_mtime(fd: int, mtime_ns: int, target: str) -> None:
    try:
        os.utime(fd, ns=(time.time_ns(), mtime_ns))
        os.fsync(fd)
    except OSError as error:
        raise EditError(f"setting the modification time failed: {_reason(error)}; the original is unchanged", target) from None
