"""Writing fails (disk full, read-only output folder): one line naming the file and the cause,
a non-zero exit, no temporary file left behind, and the outputs already written stay complete."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import numpy as np
import pytest

from audiolm import cli
from audiolm.data import shards


@pytest.fixture
def inputs(tmp_path, speech_wav):
    files = []
    for i in range(5):
        files.append(tmp_path / f"in{i}.wav")
        shutil.copy(speech_wav, files[-1])
    return files


def _check(out, err, code, expected_written, cause):
    assert code == 2
    line, = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert f"in{expected_written}.npy: cannot write ({cause})" in line and f"writing {expected_written} of 5" in line
    assert sorted(p.name for p in out.iterdir()) == [f"in{i}.npy" for i in range(expected_written)]  # no temp files
    for i in range(expected_written):
        assert np.load(out / f"in{i}.npy").shape[0] == 4  # complete arrays: k x t codes


@pytest.mark.parametrize("cause, number", [("No space left on device", errno.ENOSPC),
                                           ("Read-only file system", errno.EROFS)])
def test_a_failing_write_stops_the_batch_cleanly(inputs, tiny_continuations, tmp_path, capsys, monkeypatch, cause, number):
    real_fdopen, calls = os.fdopen, []

    class HalfWrite:  # a file object that writes half of the data, then fails as the system would
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(number, cause)

    def fdopen(fd, mode="r", *args, **kwargs):  # the third codes file hits the wall
        f = real_fdopen(fd, mode, *args, **kwargs)
        if ".npy." in os.readlink(f"/proc/self/fd/{fd}"):
            calls.append(fd)
            if len(calls) == 3:
                return HalfWrite(f)
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)
    out = tmp_path / "codes"
    code = cli.main(["encode", "--codec", str(tiny_continuations.run_dir / "codec"), *map(str, inputs), "-o", str(out)])
    _check(out, capsys.readouterr().err, code, 2, cause)


def _can_mount() -> bool:
    probe = subprocess.run(["sh", "-c", "command -v mount && test $(id -u) = 0"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs root and mount (a real tmpfs); the fault-injected test covers the logic")
def test_a_real_full_disk(inputs, tiny_continuations, tmp_path, capsys):
    """The same on a 48 KB tmpfs, where each codes file is a few KB: the disk really fills up."""
    out = tmp_path / "small"
    out.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(out)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        (out / "ballast").write_bytes(b"\0" * (48 * 1024 - 3 * 4096))  # leaves room for about two files
        code = cli.main(["encode", "--codec", str(tiny_continuations.run_dir / "codec"), *map(str, inputs),
                         "-o", str(out / "codes")])
        err = capsys.readouterr().err
        assert code == 2 and "cannot write (No space left on device)" in err and err.count("\n") == 1
        written = sorted(p.name for p in (out / "codes").iterdir())
        assert written and all(not name.startswith(".") for name in written)
        for name in written:
            np.load(out / "codes" / name)
        subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
        code = cli.main(["encode", "--codec", str(tiny_continuations.run_dir / "codec"), str(inputs[0]),
                         "-o", str(out / "codes")])
        assert code == 2 and "Read-only file system" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", str(out)], capture_output=True)


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount(), reason="needs root and mount (a real tmpfs)")
def test_a_stage_that_fills_the_disk_stops_in_one_line_and_resumes_once_there_is_room(tmp_path):
    """The tiny pipeline's stages 0-2 on a 12 MB tmpfs: a stage runs out of space, says so in one
    line, leaves no temporary behind and every finished output intact; given room, it resumes."""
    import sys

    from tests.conftest import REPO

    runs = tmp_path / "runs"
    runs.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(runs)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        stages = ["stage0_corpus", "stage1_semantic", "stage2_codec"]
        command = lambda stage: [sys.executable, "-m", f"stages.{stage}", "--pipeline", "pipelines/tiny.yaml",  # noqa: E731
                                 f"runs_dir={runs}"]
        failed = None
        for stage in stages:
            result = subprocess.run(command(stage), cwd=REPO, capture_output=True, text=True)
            if result.returncode:
                failed = stage
                break
        assert failed, "the disk never filled up"
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-1500:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr[-1500:]
        print(f"the disk filled up in {failed}: {errors[0]}")
        run = runs / "tiny"
        assert not [p for p in run.rglob("*") if ".tmp" in p.name or (p.name.startswith(".") and "partial" not in p.name)]
        if (run / "corpus" / "stage.json").exists():
            assert shards.load_splits(run / "corpus")["train"].num_rows > 0
        subprocess.run(["mount", "-o", "remount,size=256m", str(runs)], check=True)
        for stage in stages[stages.index(failed):]:
            result = subprocess.run(command(stage), cwd=REPO, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr[-1500:]
        assert (run / "codec" / "model.safetensors").exists()
    finally:
        subprocess.run(["umount", str(runs)], capture_output=True)
