"""A folder written as one transaction, by one writer at a time.

`keras-prompt tune` publishes a run folder (`prompt.safetensors`,
`run.json`) and `export_saved_model` a SavedModel folder. Both write
everything into a staging folder beside the target,
`.<name>.tmp-XXXXXXXX`, and publish it in one atomic step
(`publish_folder`):

- a new target: one `rename` of the staging folder to it;
- an existing target (`overwrite`): one `renameat2(RENAME_EXCHANGE)`
  that swaps the two folders (Linux 3.15 and later, on ext4, XFS, Btrfs,
  tmpfs and most others); the staging path then holds the old folder,
  which is removed.

Until that step the target is the whole old folder, after it the whole
new one, so a kill at any moment leaves one or the other, and at worst a
staging folder, which the next writer of the same target removes
(`remove_leftovers`). Where the exchange is not available (other systems,
file systems without it) the old folder is renamed aside
(`.<name>.old-XXXXXXXX`) and the new one into place: a kill between the
two renames leaves no target but the old folder whole beside it, and the
next writer puts it back before anything else.

`FolderLock` keeps a second writer out: an advisory `flock` on
`.<name>.lock` beside the target, which holds the writer's pid. A second
writer is refused at once with a `FolderLockedError` naming that pid; the
kernel drops the lock of a killed process, so the next writer takes a
stale lock file over. Readers take no lock: they only ever see a whole
folder.
"""

import ctypes
import errno
import fcntl
import os
import re
import shutil
import tempfile
import time

_STAGING = "tmp"
_ASIDE = "old"
# `tempfile`'s random names: 8 of these characters.
_RANDOM = "[a-z0-9_]{8}"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# errnos of a kernel, C library or file system without the exchange.
_NO_EXCHANGE = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV)


class FolderLockedError(OSError):
    """Another process is writing the folder (it holds its lock)."""


def target_path(path):
    """The absolute path a folder is published at: `path` with symbolic
    links resolved (a link to a folder publishes into that folder)."""
    return os.path.realpath(os.fspath(path))


def _sibling(path, kind):
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}.{kind}")


def make_staging(path):
    """A new empty staging folder beside the target `path` (a target
    path)."""
    head, name = os.path.split(path)
    return tempfile.mkdtemp(dir=head, prefix=f".{name}.{_STAGING}-")


# -- publication ---------------------------------------------------------------
def _libc_exchange():
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None


_renameat2 = _libc_exchange()


def exchange(first, second):
    """Swaps the folders (or files) `first` and `second` atomically.

    Raises `OSError` (`ENOTSUP` where the system has no exchange)."""
    if _renameat2 is None:
        raise OSError(errno.ENOTSUP, "renameat2 is not available")
    result = _renameat2(
        _AT_FDCWD,
        os.fsencode(first),
        _AT_FDCWD,
        os.fsencode(second),
        _RENAME_EXCHANGE,
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), first, None, second)


def _aside_path(path):
    head, name = os.path.split(path)
    aside = tempfile.mkdtemp(dir=head, prefix=f".{name}.{_ASIDE}-")
    os.rmdir(aside)
    return aside


def publish_folder(staging, path):
    """Publishes the finished folder `staging` as `path` in one atomic
    step (see the module docstring); an existing `path` is replaced and
    removed. `path` is a target path (`target_path`), `staging` a folder
    of `make_staging(path)`."""
    if not os.path.lexists(path):
        os.rename(staging, path)
        return
    try:
        exchange(staging, path)
        old = staging
    except OSError as error:
        if error.errno not in _NO_EXCHANGE:
            raise
        old = _aside_path(path)
        os.rename(path, old)
        os.rename(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def link_or_copy(source, target):
    """A hard link `target` to the file `source` (the same bytes, no
    copy), or a copy where links are not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def carry_over(old, new, skip=()):
    """Puts into the staging folder `new` the entries of the folder `old`
    that `new` does not hold and that are not named in `skip`: files as
    hard links (a user's notes beside a run stay after `--overwrite`),
    folders as trees of them, links as links. `old` is untouched."""
    if not os.path.isdir(old):
        return
    for name in sorted(os.listdir(old)):
        source, target = os.path.join(old, name), os.path.join(new, name)
        if name in skip or os.path.lexists(target):
            continue
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        elif os.path.isdir(source):
            shutil.copytree(
                source, target, symlinks=True, copy_function=link_or_copy
            )
        else:
            link_or_copy(source, target)


def leftovers(path):
    """The staging and set-aside folders of earlier writers of the target
    `path` that were killed (names beside it)."""
    head, name = os.path.split(path)
    pattern = re.compile(
        rf"\.{re.escape(name)}\.({_STAGING}|{_ASIDE})-{_RANDOM}"
    )
    try:
        names = os.listdir(head)
    except OSError:
        return []
    return sorted(n for n in names if pattern.fullmatch(n))


def remove_leftovers(path):
    """Cleans up after killed writers of the target `path`: a folder set
    aside by an interrupted fallback publication is put back when `path`
    is missing, and every staging folder is removed. Call it holding the
    `FolderLock` of `path` (another writer's staging folder is in use).
    Returns the names removed."""
    head = os.path.dirname(path)
    names = leftovers(path)
    prefix = f".{os.path.basename(path)}.{_ASIDE}-"
    aside = [n for n in names if n.startswith(prefix)]
    if aside and not os.path.lexists(path):
        aside = [os.path.join(head, n) for n in aside]
        newest = max(aside, key=lambda n: os.lstat(n).st_mtime_ns)
        os.rename(newest, path)
        names.remove(os.path.basename(newest))
    for name in names:
        shutil.rmtree(os.path.join(head, name), ignore_errors=True)
    return names


# -- one writer ----------------------------------------------------------------
# Locks this process holds: {lock file: [FolderLock, depth]}, so that a
# command holding a lock may call a library function that takes it again.
_HELD = {}


def _read_pid(fd):
    """The pid a lock file records, or `None` (being written, or none)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.005)
    return None


class FolderLock:
    """An advisory lock held while writing the folder `path`.

    A context manager: entering takes the lock or raises a
    `FolderLockedError` at once (never waits) naming the holder's pid;
    leaving releases it and removes the lock file.

    Args:
        path: the folder (need not exist; its parent folder must).
        name: how messages name the folder, e.g. `"--output"`.
        nested: bool, join the lock when this process holds it already (a
            library function called by a command that locked the
            folder); otherwise that is refused as another writer.
    """

    def __init__(self, path, name="the folder", nested=False):
        self.path = target_path(path)
        self.name = name
        self.nested = nested
        self.lock_file = _sibling(self.path, "lock")
        self._fd = None

    def __enter__(self):
        held = _HELD.get(self.lock_file)
        if held is not None:
            if not self.nested:
                raise self._locked_error(os.getpid())
            held[1] += 1
            return self
        self._fd = self._acquire()
        _HELD[self.lock_file] = [self, 1]
        return self

    def __exit__(self, *exc_info):
        held = _HELD[self.lock_file]
        held[1] -= 1
        if held[1]:
            return
        del _HELD[self.lock_file]
        owner = held[0]
        # Removed while held: a writer that opened the file before sees
        # it gone when it gets the lock, and opens the path again.
        try:
            os.unlink(owner.lock_file)
        except OSError:
            pass
        os.close(owner._fd)
        owner._fd = None

    def _acquire(self):
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise self._locked_error(pid) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                current = os.stat(self.lock_file)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (
                mine.st_ino,
                mine.st_dev,
            ):
                break
            os.close(fd)  # Its holder removed it: take the new one.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return fd

    def _locked_error(self, pid):
        holder = f"process {pid}" if pid else "another process"
        return FolderLockedError(
            f"{self.name} {self.path!r} is being written by {holder} (it "
            f"holds {self.lock_file!r}); wait until it finishes, or choose "
            "another folder",
        )
