"""Atomic writes: write to a temporary name in the same folder, fsync, then rename over the target.

An interrupted run leaves either the old file or folder or the new one, never a half-written one.
The names a kill can leave behind, and what start-up does with them (`recover`):

    .NAME.xxxxxxxx.tmp     a file or folder being written              removed
    .NAME.old              the previous NAME, renamed away to be       restored when NAME is missing,
                           replaced                                    removed when NAME is there
    .NAME.xxxxxxxx.del     a folder renamed away to be deleted         removed

Folders are written through one temporary folder (`atomic_dir`): every file in it is fsynced, it is
renamed into place, and the parent folder is fsynced, so the rename itself survives a power cut.
An `atomic_dir` opened on a folder that an enclosing `atomic_dir` is building writes in place: the
enclosing rename already makes the whole folder appear at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)

_building: set[str] = set()  # temporary folders that an atomic_dir of this process is filling
LEFTOVER = re.compile(r"^\.(?P<name>.+?)(?:\.[A-Za-z0-9_]{8}\.(?:tmp|del)|\.old)$")


# ---------------------------------------------------------------- durability
def fsync_dir(path: str | os.PathLike) -> None:
    """Make the entries of a folder (renames, new names) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file under `path`, then every folder, deepest first."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(root)


def remove(path: str | os.PathLike) -> None:
    """Delete a file or folder: a folder is first renamed to `.NAME.xxxxxxxx.del`, so that a kill during the
    deletion never leaves a half-deleted folder under its real name."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        gone = path.with_name(f".{path.name}.{os.urandom(4).hex()}.del")
        os.rename(path, gone)
        fsync_dir(path.parent)
        shutil.rmtree(gone)
    elif path.exists() or path.is_symlink():
        os.unlink(path)


def replace_dir(tmp: Path, path: Path) -> None:
    """Rename the finished folder `tmp` onto `path`. An existing `path` is renamed to `.NAME.old` first and
    deleted last: at every moment one complete version exists under `path` or `.NAME.old`."""
    old = path.with_name(f".{path.name}.old")
    if path.exists() or path.is_symlink():
        if old.exists() or old.is_symlink():  # left by an earlier interrupted replace; `path` is the newer one
            remove(old)
        os.rename(path, old)
    try:
        fsync_dir(path.parent)
        os.rename(tmp, path)
    except BaseException:  # the old version goes back (a kill here leaves it to `recover`)
        if (old.exists() or old.is_symlink()) and not (path.exists() or path.is_symlink()):
            os.rename(old, path)
        raise
    fsync_dir(path.parent)
    if old.exists() or old.is_symlink():
        remove(old)


def recover(folder: str | os.PathLike, complete=lambda path: True) -> list[str]:
    """Restore or remove what interrupted atomic writes left in `folder` (see the module docstring).

    `complete(path)` says whether a `.NAME.old` folder may be restored. Returns one line per action."""
    folder, done = Path(folder), []
    if not folder.is_dir():
        return done
    for entry in sorted(folder.iterdir()):
        m = LEFTOVER.match(entry.name)
        if m is None:
            continue
        target = folder / m.group("name")
        restorable = entry.name.endswith(".old") and LEFTOVER.match(target.name) is None
        if restorable and not (target.exists() or target.is_symlink()) and complete(entry):
            os.rename(entry, target)
            done.append(f"restored {target.name} from {entry.name} (a replace was interrupted)")
        else:
            remove(entry)
            done.append(f"removed {entry.name} (left by an interrupted write)")
    if done:
        fsync_dir(folder)
    return done


# ---------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success fsync and rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file for writing; it replaces `path` only when the block ends cleanly."""
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as f:
            yield f


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder beside `path`; on success it replaces `path` as a whole (see replace_dir)."""
    path = Path(path)
    if os.path.realpath(path) in _building:  # an enclosing atomic_dir is building this folder: write in place
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    key = os.path.realpath(tmp)
    _building.add(key)
    try:
        yield tmp
        fsync_tree(tmp)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _building.discard(key)
