"""A folder published in one atomic step, one writer at a time
(`keras_prompt.run_folders`)."""

import os
import signal
import subprocess
import sys

import pytest

from keras_prompt import run_folders
from keras_prompt.run_folders import FolderLock
from keras_prompt.run_folders import FolderLockedError
from tests.conftest import REPO_ROOT

#: A process that loads `run_folders` alone (no TensorFlow: it starts in a
#: blink), takes the lock of argv[1], says so, and waits for stdin.
HOLDER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("run_folders", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with module.FolderLock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def start_holder(folder):
    path = os.path.join(REPO_ROOT, "keras_prompt", "run_folders.py")
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "locked\n"
    return process


def write_folder(path, version):
    """Stages a folder of two files that name `version` and publishes it."""
    staging = run_folders.make_staging(path)
    for name in ("a.txt", "b.txt"):
        with open(os.path.join(staging, name), "w") as f:
            f.write(version)
    run_folders.publish_folder(staging, path)


def versions(path):
    """The versions the folder's two files hold."""
    return {
        open(os.path.join(path, name)).read() for name in ("a.txt", "b.txt")
    }


class DyingFileSystem:
    """Makes the `n`-th file-system step fail and every later one too, as
    if the process had been killed there (nothing after it, clean-ups
    included, reaches the disk)."""

    CALLS = ("rename", "replace", "link", "symlink", "mkdir", "rmdir")
    CALLS += ("unlink", "remove", "chmod")

    def __init__(self, monkeypatch, n):
        self.n, self.count, self.dead = n, 0, False
        for name in self.CALLS:
            monkeypatch.setattr(os, name, self.wrap(getattr(os, name)))
        monkeypatch.setattr(
            run_folders, "exchange", self.wrap(run_folders.exchange)
        )

    def wrap(self, function):
        def step(*args, **kwargs):
            self.count += 1
            if self.dead or self.count == self.n:
                self.dead = True
                raise OSError(f"killed at file-system step {self.n}")
            return function(*args, **kwargs)

        return step


def attempts_killed_at_each_step(monkeypatch, publish):
    """Runs `publish()` killed at file-system step 1, then 2, ... until
    it runs to its end; yields after each attempt whether it was
    killed."""
    n = 0
    while True:
        n += 1
        with monkeypatch.context() as patch:
            dying = DyingFileSystem(patch, n)
            try:
                publish()
            except OSError:
                assert dying.dead
        yield dying.dead
        if not dying.dead:
            return


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "renames"])
def test_killed_at_every_step_leaves_the_old_or_the_new_folder(
    tmp_path, monkeypatch, exchange
):
    if not exchange:  # The fallback of systems without renameat2.
        monkeypatch.setattr(run_folders, "_renameat2", None)
    path = str(tmp_path / "run")
    write_folder(path, "old")
    seen = []

    def publish():
        write_folder(path, "new")

    for killed in attempts_killed_at_each_step(monkeypatch, publish):
        # What the next writer finds, after its clean-up.
        with FolderLock(path):
            run_folders.remove_leftovers(path)
        assert run_folders.leftovers(path) == []
        found = versions(path)
        assert found in ({"old"}, {"new"}), (len(seen), found)
        seen.append(found.pop())
        if killed and seen[-1] == "new":
            write_folder(path, "old")
    assert set(seen) == {"old", "new"}
    assert len(seen) >= 4  # staging, two files, the publication, removal
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_a_new_folder_is_renamed_and_carry_over_keeps_other_files(
    tmp_path,
):
    path = str(tmp_path / "run")
    write_folder(path, "1")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    (tmp_path / "run" / "sub").mkdir()
    (tmp_path / "run" / "sub" / "x").write_text("x")
    (tmp_path / "run" / "link").symlink_to("notes.txt")
    (tmp_path / "run" / "checkpoint").mkdir()
    staging = run_folders.make_staging(path)
    (tmp_path / staging / "a.txt").write_text("2")
    run_folders.carry_over(path, staging, skip=("checkpoint",))
    (tmp_path / staging / "b.txt").write_text("2")
    run_folders.publish_folder(staging, path)
    assert sorted(os.listdir(path)) == [
        "a.txt",
        "b.txt",
        "link",
        "notes.txt",
        "sub",
    ]
    assert versions(path) == {"2"}
    assert (tmp_path / "run" / "link").read_text() == "mine"
    assert (tmp_path / "run" / "sub" / "x").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_a_folder_set_aside_by_a_killed_fallback_is_put_back(tmp_path):
    path = str(tmp_path / "run")
    write_folder(path, "old")
    aside = run_folders._aside_path(path)
    os.rename(path, aside)  # Killed before the second rename.
    staging = run_folders.make_staging(path)
    assert sorted(run_folders.leftovers(path)) == sorted(
        os.path.basename(p) for p in (aside, staging)
    )
    with FolderLock(path):
        run_folders.remove_leftovers(path)
    assert versions(path) == {"old"}
    assert sorted(os.listdir(tmp_path)) == ["run"]
    # Another target's names are not leftovers of this one.
    (tmp_path / ".run.tmp-x.tmp-abcdefgh").mkdir()
    (tmp_path / ".runs.tmp-abcdefgh").mkdir()
    assert run_folders.leftovers(path) == []


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    path = tmp_path / "run"
    holder = start_holder(path)
    try:
        with pytest.raises(FolderLockedError) as info:
            with FolderLock(path, "--output"):
                pass
        message = str(info.value)
        assert f"process {holder.pid}" in message
        assert message.startswith(f"--output {str(path)!r} is being written")
        assert isinstance(info.value, OSError)
    finally:
        holder.communicate("\n")
    # Released: taken, and the lock file goes with the lock.
    with FolderLock(path) as lock:
        assert open(lock.lock_file).read() == f"{os.getpid()}\n"
        with FolderLock(path, nested=True):  # joins this process's lock
            pass
        with pytest.raises(FolderLockedError, match=f"process {os.getpid()}"):
            with FolderLock(path):  # another writer in this process
                pass
        assert os.path.exists(lock.lock_file)
    assert os.listdir(tmp_path) == []


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    path = tmp_path / "run"
    holder = start_holder(path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock_file = tmp_path / ".run.lock"
    assert lock_file.read_text() == f"{holder.pid}\n"  # left behind
    with FolderLock(path):
        assert lock_file.read_text() == f"{os.getpid()}\n"
    assert os.listdir(tmp_path) == []


def test_a_lock_file_removed_by_its_holder_is_not_shared(tmp_path, monkeypatch):
    """A writer that opened the lock file just before its holder removed
    it gets the lock of a file no one else sees: it must open the path
    again, or a third writer would take "the" lock beside it."""
    import fcntl

    path = tmp_path / "run"
    holder = FolderLock(path)
    holder.__enter__()
    real_flock = fcntl.flock
    raced = []

    def racing_flock(fd, operation):
        if not raced:  # The holder finishes between open and flock.
            raced.append(fd)
            holder.__exit__(None, None, None)
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", racing_flock)
    writer = FolderLock(path)
    fd = writer._acquire()
    assert raced and raced[0] != fd
    assert os.fstat(fd).st_ino == os.stat(writer.lock_file).st_ino
    third = os.open(writer.lock_file, os.O_RDWR)
    with pytest.raises(BlockingIOError):
        real_flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(third)
    os.close(fd)
