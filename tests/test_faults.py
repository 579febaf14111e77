"""Faults during a run: a kill or an error while writing, a damaged last.pt on resume, a run
refused at start-up, two runs on one folder, a DataLoader worker killed."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from pose.engine.checkpoint import load_checkpoint, load_resume_checkpoint, save_checkpoint
from pose.engine.run_dir import LOCK_NAME, PROCESS_START, RunFolder, RunFolderBusyError
from pose.io import FileWriteError, atomic_write_text
from pose.models.weights import CheckpointError

N = 3  # steps before a fault in the training runs (an epoch is 5 steps)


def _entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# --- Writes ---------------------------------------------------------------------------------

def test_an_error_while_writing_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "before\n")

    def disk_full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(FileWriteError) as error:
        atomic_write_text(path, "after\n")
    assert str(error.value) == (f"cannot write {path}: No space left on device (any earlier "
                                "metrics.json is unchanged)")
    assert path.read_text() == "before\n" and _entries(tmp_path) == ["metrics.json"]
    monkeypatch.undo()
    # A folder that is not there: the same one line.
    with pytest.raises(FileWriteError, match=f"cannot write {tmp_path / 'no' / 'x.json'}: "):
        atomic_write_text(tmp_path / "no" / "x.json", "{}")


def test_an_error_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {}, "step": 1})
    real_save = torch.save

    def save_half_then_fail(content, handle, *args, **kwargs):
        real_save(content, handle, *args, **kwargs)
        handle.truncate(handle.tell() // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(FileWriteError, match=f"cannot write {path}: No space left on device"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "config": {}, "step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1 and _entries(tmp_path) == ["last.pt"]


# A process writing checkpoints: a small one, then big ones until it is killed.
_WRITER = textwrap.dedent("""
    import sys, torch
    from pose.engine.checkpoint import save_checkpoint
    path = sys.argv[1]
    save_checkpoint(path, {"model": {"w": torch.ones(4)}, "config": {}, "step": 0})
    print("saved", flush=True)
    big = {"w": torch.arange(64 << 20, dtype=torch.uint8)}
    step = 0
    while True:
        step += 1
        save_checkpoint(path, {"model": big, "config": {}, "step": step})
""")


@pytest.mark.slow
def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    path = tmp_path / "last.pt"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdout.readline().strip() == "saved"
    deadline = time.monotonic() + 120
    partial = []
    while not partial and time.monotonic() < deadline:  # the kill lands mid-write
        partial = [entry for entry in tmp_path.glob(".last.pt.*.tmp") if entry.stat().st_size]
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert partial, "no write in progress was seen"
    checkpoint = load_checkpoint(path)  # complete: the first one, or a big one
    assert checkpoint["step"] == 0 or checkpoint["model"]["w"].numel() == 64 << 20
    # The unfinished write (unless the kill fell between two writes): the next run removes it.
    with RunFolder(tmp_path, created=False) as folder:
        folder.claim()
        assert _entries(tmp_path) == [LOCK_NAME, "last.pt"]
    assert _entries(tmp_path) == ["last.pt"]


# --- A damaged last.pt ----------------------------------------------------------------------

def test_a_damaged_last_checkpoint_names_the_best_one(tmp_path):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_checkpoint(best, {"model": {}, "config": {}, "step": 40})
    save_checkpoint(last, {"model": {}, "config": {}, "step": 50})
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(CheckpointError) as error:
        load_resume_checkpoint(last)
    message = str(error.value)
    assert message.startswith(f"cannot read checkpoint {last}: ") and "\n" not in message
    assert "nothing was changed" in message and f"{best} (step 40) can be read" in message
    best.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no other checkpoint .* can be read"):
        load_resume_checkpoint(last)


# --- The run folder -------------------------------------------------------------------------

def _made_before_this_run(path: Path) -> Path:
    """``path``, dated before this process started (what RunFolder compares with)."""
    os.utime(path, (PROCESS_START - 60, PROCESS_START - 60))
    return path


def test_a_refused_run_removes_only_what_it_made(tmp_path):
    made = tmp_path / "made"
    with pytest.raises(ValueError), RunFolder(made) as folder:
        folder.claim()
        (made / "log.txt").write_text("starting\n")
        (made / "tensorboard").mkdir()
        raise ValueError("the dataset is missing")
    assert not made.exists()

    existed = tmp_path / "existed"
    existed.mkdir()
    _made_before_this_run(existed)
    with pytest.raises(ValueError), RunFolder(existed):  # not claimed: whose files are they?
        (existed / "log.txt").write_text("starting\n")
        raise ValueError("the dataset is missing")
    assert _entries(existed) == ["log.txt"]
    with pytest.raises(ValueError), RunFolder(existed) as folder:  # claimed: ours
        folder.claim()
        (existed / "config.yaml").write_text("name: run\n")
        (existed / "log.txt").write_text("starting again\n")
        raise ValueError("the dataset is missing")
    assert _entries(existed) == ["log.txt"]  # it was there before (the run appended to it)

    holding_older = tmp_path / "older"
    with pytest.raises(ValueError), RunFolder(holding_older) as folder:
        folder.claim()
        (holding_older / "notes.txt").write_text("copied in, with its time")
        _made_before_this_run(holding_older / "notes.txt")
        raise ValueError("refused")
    assert _entries(holding_older) == ["notes.txt"]

    started = tmp_path / "started"
    with pytest.raises(ValueError), RunFolder(started) as folder:
        folder.claim()
        folder.keep()
        (started / "last.pt").write_bytes(b"weights")
        raise ValueError("failed while training")
    assert _entries(started) == ["last.pt"]


def test_one_run_per_folder(tmp_path):
    with RunFolder(tmp_path, created=False) as first:
        first.claim()
        holder = (tmp_path / LOCK_NAME).read_text()
        assert holder.startswith(f"pid {os.getpid()} on host {socket.gethostname()}")
        second = RunFolder(tmp_path, created=False)
        with pytest.raises(RunFolderBusyError, match=f"{tmp_path} is in use by another run "
                                                     f"\\(pid {os.getpid()}"):
            second.claim()
    assert _entries(tmp_path) == []  # released on exit
    with RunFolder(tmp_path, created=False) as third:
        third.claim()


# A run holding a folder's lock, with a forked child (as a DataLoader worker) that outlives it.
_HOLDER = textwrap.dedent("""
    import os, sys, time
    from pose.engine.run_dir import RunFolder
    RunFolder(sys.argv[1]).claim()
    started, tell = os.pipe()
    child = os.fork()
    if child == 0:  # the at-fork hooks have run once os.fork returns here
        os.write(tell, b"x")
        time.sleep(60)
        os._exit(0)
    os.read(started, 1)
    print("locked", child, flush=True)
    time.sleep(600)
""")


def hold_the_lock(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (until it is killed); ``holder.child``: the
    pid of its forked child, which the caller kills."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)],
                              stdout=subprocess.PIPE, text=True)
    word, child = holder.stdout.readline().split()
    assert word == "locked"
    holder.child = int(child)
    return holder


def stop(holder: subprocess.Popen) -> None:
    """SIGKILL the holder (its forked child lives on, as a worker of a killed run does)."""
    holder.send_signal(signal.SIGKILL)
    holder.wait()


@pytest.mark.slow
def test_the_lock_of_a_killed_run_is_stale(tmp_path):
    holder = hold_the_lock(tmp_path)
    try:
        with pytest.raises(RunFolderBusyError, match=f"pid {holder.pid} "):
            RunFolder(tmp_path).claim()
        stop(holder)
        assert f"pid {holder.pid} " in (tmp_path / LOCK_NAME).read_text()  # left by the run
        with RunFolder(tmp_path) as folder:
            folder.claim()  # taken over (pose.train's stderr says so: see the test below)
            assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} ")
        assert _entries(tmp_path) == []
    finally:
        os.kill(holder.child, signal.SIGKILL)


# --- Through the entry points ---------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(synthetic_coco) -> Path:
    # 23 people: 5 batches of 4 per epoch.
    return synthetic_coco(num_train_images=12, num_val_images=2, seed=4, image_size=(128, 128))


def train_command(dataset: Path, run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "pose.train", "experiment=demo", "model=hrnet_w8_tiny",
            f"data.root={dataset}", "data.image_size=[64,64]", "data.heatmap_size=[16,16]",
            "train.batch_size=4", "device=cpu", "eval.flip_test=false", "eval.num_visualize=0",
            "train.num_log_images=0", "train.precision=fp32", f"hydra.run.dir={run_dir}",
            *overrides]


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def one_error_line(result: subprocess.CompletedProcess, program: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{program}: error")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


@pytest.mark.slow
def test_refused_runs_leave_no_folder(dataset, tmp_path, run_module):
    missing = run(train_command(tmp_path / "no_dataset", tmp_path / "run"))
    assert "COCO root" in one_error_line(missing, "pose.train")
    assert not (tmp_path / "run").exists()

    bad_checkpoint = tmp_path / "weights.pth"
    bad_checkpoint.write_bytes(b"not weights")
    evaluation = run_module("pose.eval", f"checkpoint={bad_checkpoint}", "model=hrnet_w8_tiny",
                            "device=cpu")  # the default folder: beside the checkpoint
    assert "cannot read checkpoint" in one_error_line(evaluation, "pose.eval")
    assert _entries(tmp_path) == ["weights.pth"]

    existed = tmp_path / "existed"
    existed.mkdir()
    os.utime(existed, (time.time() - 60, time.time() - 60))
    kept = run(train_command(tmp_path / "no_dataset", existed))
    one_error_line(kept, "pose.train")
    assert existed.is_dir()  # never removed: it was there before


@pytest.mark.slow
def test_a_second_run_on_a_folder_in_use_is_refused(dataset, tmp_path):
    run_dir = tmp_path / "run"
    holder = hold_the_lock(run_dir)
    try:
        second = run(train_command(dataset, run_dir, "train.max_steps=1"))
        line = one_error_line(second, "pose.train")
        assert f"{run_dir} is in use by another run (pid {holder.pid} on host" in line
        assert _entries(run_dir) == [LOCK_NAME]  # nothing written
    finally:
        stop(holder)
        os.kill(holder.child, signal.SIGKILL)
    after = run(train_command(dataset, run_dir, "train.max_steps=1"))
    assert after.returncode == 0, after.stderr[-3000:]
    assert "lock was stale" in after.stderr and LOCK_NAME not in _entries(run_dir)


# Runs pose.train with torch.save failing (disk full) from its second call on.
_FULL_DISK = textwrap.dedent("""
    import errno, os, runpy, sys, torch
    real_save, calls = torch.save, []
    def save(content, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) >= 2:
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(content, handle, *args, **kwargs)
    torch.save = save
    sys.argv = ["pose.train", *sys.argv[1:]]
    runpy.run_module("pose.train", run_name="__main__")
""")


@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_one_line(dataset, tmp_path):
    run_dir = tmp_path / "run"
    command = train_command(dataset, run_dir, "train.checkpoint_interval=1",
                            "train.max_steps=3", "data.num_workers=0")
    result = run([sys.executable, "-c", _FULL_DISK, *command[3:]])
    line = one_error_line(result, "pose.train")
    assert line == (f"pose.train: error: cannot write {run_dir / 'last.pt'}: No space left on "
                    "device (any earlier last.pt is unchanged)")
    assert load_checkpoint(run_dir / "last.pt")["step"] == 1
    assert not list(run_dir.glob(".*.tmp")) and LOCK_NAME not in _entries(run_dir)


@pytest.mark.slow
def test_a_damaged_last_checkpoint_is_never_trained_over(dataset, tmp_path):
    run_dir = tmp_path / "run"
    first = run(train_command(dataset, run_dir, "train.max_steps=2", "data.num_workers=0"))
    assert first.returncode == 0, first.stderr[-3000:]
    last = run_dir / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    before = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in
              run_dir.iterdir() if path.is_file() and path.name != "log.txt"}
    for resume in ("true", "auto"):
        result = run(train_command(dataset, run_dir, "train.max_steps=4", "data.num_workers=0",
                                   f"train.resume={resume}"))
        line = one_error_line(result, "pose.train")
        assert f"cannot read checkpoint {last}" in line and "nothing was changed" in line
        assert f"{run_dir / 'best.pt'} (step 2) can be read" in line
        after = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in
                 run_dir.iterdir() if path.is_file() and path.name != "log.txt"}
        assert after == before


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_and_it_resumes_exactly(dataset, tmp_path):
    overrides = ["data.num_workers=2", f"train.checkpoint_interval={N}",
                 f"train.max_steps={2 * N}"]
    straight = run(train_command(dataset, tmp_path / "straight", *overrides))
    assert straight.returncode == 0, straight.stderr[-3000:]

    run_dir = tmp_path / "killed"
    process = subprocess.Popen(train_command(dataset, run_dir, *overrides),
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(300, process.kill)
    watchdog.start()
    seen, worker = [], None
    for line in process.stderr:
        seen.append(line)
        if worker is None and f"step {N}: checkpoint saved" in line:
            worker = _children(process.pid)[0]
            os.kill(worker, signal.SIGKILL)
    process.wait()
    watchdog.cancel()
    stderr = "".join(seen)
    assert worker is not None, stderr[-3000:]
    assert process.returncode == 2 and "Traceback" not in stderr, stderr[-3000:]
    killed_at = load_checkpoint(run_dir / "last.pt")
    assert (f"pose.train: error: DataLoader worker process (pid {worker}) was killed by signal "
            f"Killed") in stderr
    assert f"the run stopped, {run_dir / 'last.pt'} holds step {killed_at['step']}" in stderr
    assert N <= killed_at["step"] < 2 * N

    resumed = run(train_command(dataset, run_dir, *overrides, "train.resume=true"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    actual = torch.load(run_dir / "last.pt", weights_only=True)
    assert actual["step"] == expected["step"] == 2 * N
    different = [key for key in expected["model"]
                 if not torch.equal(expected["model"][key], actual["model"][key])]
    assert not different, different[:5]
