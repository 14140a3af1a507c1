"""Safe edits of a GGUF file's metadata.

An edit never changes the model in place. The new file is written beside the target under a temporary
name, flushed to disk, opened again and compared with what was meant to be written, and only then renamed
over the target; the folder is flushed after the rename. A crash at any point leaves the path holding
either the old file or the complete new one, plus at most a temporary file that the next edit removes and
reports. An advisory lock (``flock``) on the target keeps two gguftools edits of one file apart.

A symbolic link stays a link: its target is replaced. A hard link is not kept: the other names still see the
old file after the rename, because the new file is a new inode.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import glob
import os
import secrets
import stat

from gguftools.container.reader import GGUFFile
from gguftools.container.writer import NewValue, write_with_metadata
from gguftools.errors import EditError, GGUFToolsError

TEMP_MARKER = ".gguftools-"
VERIFY_SPAN = 1024 * 1024


@dataclasses.dataclass
class EditResult:
    """What an edit did: the file it wrote and the leftover temporary files it removed first."""

    path: str
    stale_removed: list[str]


def temp_pattern(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{glob.escape(name)}{TEMP_MARKER}*.tmp")


def _remove_stale_temps(path: str) -> list[str]:
    """Remove temporary files left by an interrupted edit of ``path`` (called while holding its lock)."""
    removed = []
    for stale in glob.glob(temp_pattern(path)):
        try:
            os.unlink(stale)
            removed.append(stale)
        except FileNotFoundError:
            pass
    return removed


def _lock(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise EditError("file not found", path) from None
    except PermissionError:
        raise EditError("permission denied: cannot open the file for reading", path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EditError("another gguftools process is editing this file; try again when it has finished", path) from None
    return fd


def _os_error_message(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "no space left on the device for the new file"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: cannot write the new file in this folder"
    if error.errno == errno.EROFS:
        return "the folder is on a read-only file system"
    return error.strerror or str(error)


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_written(source: GGUFFile, temp_path: str, changes: dict[str, NewValue | None]) -> None:
    """Open the new file and compare it with the source and the intended changes; raise EditError if off."""
    try:
        written = GGUFFile(temp_path)
    except GGUFToolsError as error:
        raise EditError(f"the new file does not read back: {error.message}", source.path) from None
    try:
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
            if source._map[old.start : old.end] != written._map[field.start : field.end]:  # noqa: SLF001
                raise EditError(f"key {key!r} changed while copying", source.path)
        old_tensors = [(t.raw_name, t.ggml_shape, t.type_id, t.offset) for t in source.tensors.values()]
        new_tensors = [(t.raw_name, t.ggml_shape, t.type_id, t.offset) for t in written.tensors.values()]
        if old_tensors != new_tensors:
            raise EditError("the new file's tensor infos differ from the original's", source.path)
        data_size = source.file_size - source.data_offset
        if written.file_size - written.data_offset != data_size:
            raise EditError("the new file's tensor data has a different size", source.path)
        for start in (0, max(0, data_size - VERIFY_SPAN)):
            end = min(data_size, start + VERIFY_SPAN)
            old_span = source._map[source.data_offset + start : source.data_offset + end]  # noqa: SLF001
            new_span = written._map[written.data_offset + start : written.data_offset + end]  # noqa: SLF001
            if old_span != new_span:
                raise EditError(f"tensor data differs at data offset {start}", source.path)
    finally:
        written.close()


def set_metadata(
    path: str,
    changes: dict[str, NewValue | None],
    output: str | None = None,
    overwrite_output: bool = False,
) -> EditResult:
    """Write ``path`` with the keys in ``changes`` set, in place or to ``output``; see the module docstring."""
    target = os.path.realpath(path)
    if output is not None:
        output_real = os.path.realpath(output)
        if os.path.exists(output_real) and os.path.samefile(output_real, target):
            output = None
        else:
            out_folder = os.path.dirname(output_real)
            if not os.path.isdir(out_folder):
                raise EditError(f"the output folder {out_folder} does not exist", output)
            if os.path.exists(output_real) and not overwrite_output:
                raise EditError("the output file exists; pass --force to replace it", output)
            target_out = output_real
    if output is None:
        target_out = target

    lock_fd = _lock(target)
    temp_path = None
    try:
        stale_removed = _remove_stale_temps(target_out)
        source = GGUFFile(target)
        try:
            folder, name = os.path.split(target_out)
            temp_path = os.path.join(folder, f".{name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as error:
                temp_path = None
                raise EditError(_os_error_message(error), target_out) from None
            try:
                with os.fdopen(fd, "wb") as out:
                    write_with_metadata(source, changes, out)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as error:
                raise EditError(_os_error_message(error), target_out) from None
            _check_written(source, temp_path, changes)
            mode = stat.S_IMODE(os.stat(target).st_mode)
            os.chmod(temp_path, mode)
        finally:
            source.close()
        try:
            os.replace(temp_path, target_out)
            temp_path = None
            _fsync_folder(os.path.dirname(target_out))
        except OSError as error:
            raise EditError(_os_error_message(error), target_out) from None
        return EditResult(target_out, stale_removed)
    finally:
        if temp_path is not None:
            try:
                os.unlink(temp_path)
            except OSError:
                pass
        os.close(lock_fd)
