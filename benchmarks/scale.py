"""Stages 0-2 at two corpus sizes and two process counts: what grows with the corpus is a leak.

    python -m benchmarks.scale [--minutes 20] [--factor 10] [--out runs/bench-scale] [--json OUT.json]

Builds folder corpora of long untranscribed files (LibriLight's layout, eSpeak NG speech made here:
`audiolm.data.audiobooks`) of `minutes` and `factor` x `minutes` of audio, in 5-minute files, and
runs stages 0, 1 and 2 of pipelines/tiny.yaml on each (the tiny pipeline's models, 8 s segments),
in 1 process and under `accelerate launch` in 2 (1 torch thread each). Per stage it prints the
seconds per hour of audio, disk per hour (stage 0, against the FLAC source), and the peak resident
memory of the largest process, all of it (`ru_maxrss`) and its anonymous part (sampled: the resident
total also counts the pages of the memory-mapped corpus a stage has read, which grow with the corpus
and which the kernel reclaims under pressure); then the checks of issue 27:
- at `factor` x, each stage's peak memory (both figures) <= 1.2 x its 1x figure + 200 MB;
- stage 0's disk per hour <= 1.2 x the source's;
- seconds per hour at `factor` x within 1.3 x of the 1x figure;
- stages 1-2 in 2 processes reach >= 1.6 x the audio-hours per second of 1 process, in the work
  done per hour of audio (tokenizing, encoding: the `tokenize_seconds` / `encode_seconds` of the
  stage's marker); the whole stage's ratio is printed beside it, since training the encoder or codec
  is a fixed number of steps whatever the corpus' size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil  # accelerate's own dependency

from audiolm.data.audiobooks import write_audiobooks

REPO = Path(__file__).resolve().parent.parent
STAGES = ("stage0_corpus", "stage1_semantic", "stage2_codec")
FILE_MINUTES = 5.0  # 5-minute files: long (cut at silences), and enough of them for both splits
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]


def anonymous_mb(pid: int) -> float:
    """The largest anonymous resident memory (heap, tensors: not the pages of memory-mapped files,
    which the kernel takes back when it needs them) of process `pid` and its children, in MB."""
    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    largest = 0.0
    for process in tree:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        kb = [int(line.split()[1]) for line in status.splitlines() if line.startswith("RssAnon:")]
        largest = max(largest, kb[0] / 1024 if kb else 0.0)
    return largest


def measured(command: list[str], log: Path) -> tuple[float, float, float]:
    """Run `command` (1 torch thread a process) with its output in `log`: (wall seconds, peak resident
    MB of its largest process, the largest anonymous MB of any of its processes, sampled every 0.1 s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        anonymous, done = [0.0], threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                anonymous[0] = max(anonymous[0], anonymous_mb(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)  # rusage of the command and every process it waited for
        done.set()
        sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command[-8:])} failed: see {log}")
    return time.monotonic() - start, usage.ru_maxrss / 1024, anonymous[0]


def run_stage(stage: str, runs: Path, source: Path, processes: int) -> tuple[float, float, float]:
    launcher = [*ACCELERATE, "--num_processes", str(processes), "-m"] if processes > 1 else [sys.executable, "-m"]
    command = [*launcher, f"stages.{stage}", "--pipeline", "pipelines/tiny.yaml", f"runs_dir={runs}",
               f"data.source={source}", "data.max_seconds=8.0", "data.heldout_fraction=0.45"]
    return measured(command, runs / f"{stage}.log")


def measure(out: Path, minutes: float, processes: int) -> dict:
    source = out / f"books-{minutes:g}min"
    files = max(1, round(minutes / FILE_MINUTES))
    write_audiobooks(source, speakers=files, minutes=minutes / files)
    runs = out / f"runs-{minutes:g}min-{processes}p"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    figures = {}
    for stage in STAGES:
        seconds, peak, anonymous = run_stage(stage, runs, source, processes)
        figures[stage] = {"seconds": seconds, "peak_mb": peak, "anonymous_mb": anonymous}
    marker = json.loads((runs / "tiny" / "corpus" / "stage.json").read_text())
    hours = sum(marker["hours"].values())
    phases = {"stage0_corpus": marker["build_seconds"],
              "stage1_semantic": json.loads((runs / "tiny" / "tokens" / "stage.json").read_text())["tokenize_seconds"],
              "stage2_codec": json.loads((runs / "tiny" / "acoustic" / "stage.json").read_text())["encode_seconds"]}
    source_mb = sum(p.stat().st_size for p in source.rglob("*.flac")) / 2**20
    for stage in STAGES:
        figures[stage]["seconds_per_hour"] = figures[stage]["seconds"] / hours
        figures[stage]["work_seconds"] = phases[stage]
    figures["stage0_corpus"]["disk_mb_per_hour"] = marker["disk_mb_per_hour"]
    return {"minutes": minutes, "processes": processes, "hours": hours,
            "source_mb_per_hour": source_mb / (files * minutes / files / 60), "stages": figures}


def checks(small: dict, large: dict, large_two: dict) -> list[tuple[str, bool]]:
    out = []
    for stage in STAGES:
        a, b = small["stages"][stage], large["stages"][stage]
        out.append((f"{stage}: peak {b['peak_mb']:.0f} MB <= 1.2 x {a['peak_mb']:.0f} + 200",
                    b["peak_mb"] <= 1.2 * a["peak_mb"] + 200))
        out.append((f"{stage}: anonymous peak {b['anonymous_mb']:.0f} MB <= 1.2 x {a['anonymous_mb']:.0f} + 200",
                    b["anonymous_mb"] <= 1.2 * a["anonymous_mb"] + 200))
        out.append((f"{stage}: {b['seconds_per_hour']:.0f} s/h <= 1.3 x {a['seconds_per_hour']:.0f}",
                    b["seconds_per_hour"] <= 1.3 * a["seconds_per_hour"]))
    disk, source = large["stages"]["stage0_corpus"]["disk_mb_per_hour"], large["source_mb_per_hour"]
    out.append((f"stage0_corpus: disk {disk:.1f} MB/h <= 1.2 x source {source:.1f} MB/h", disk <= 1.2 * source))
    for stage in STAGES[1:]:
        one, two = large["stages"][stage], large_two["stages"][stage]
        speedup = one["work_seconds"] / two["work_seconds"]
        whole = one["seconds"] / two["seconds"]
        out.append((f"{stage}: 2 processes {speedup:.2f} x the audio-hours per second of 1 in its per-hour work "
                    f"(>= 1.6; whole stage with its fixed training {whole:.2f} x)", speedup >= 1.6))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="the 1x corpus, minutes of audio")
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-scale")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [measure(args.out, args.minutes, 1), measure(args.out, args.minutes * args.factor, 1),
               measure(args.out, args.minutes * args.factor, 2)]
    print(f"{'corpus':>10} {'procs':>5} {'stage':<16} {'s':>7} {'s/h audio':>10} {'work s':>7} {'peak MB':>8} "
          f"{'anon MB':>8} {'disk MB/h':>10}")
    for r in results:
        for stage, f in r["stages"].items():
            disk = f"{f['disk_mb_per_hour']:.1f}" if "disk_mb_per_hour" in f else ""
            print(f"{r['hours']:>8.2f} h {r['processes']:>5} {stage:<16} {f['seconds']:>7.1f} "
                  f"{f['seconds_per_hour']:>10.1f} {f['work_seconds']:>7.1f} {f['peak_mb']:>8.0f} "
                  f"{f['anonymous_mb']:>8.0f} {disk:>10}")
    print(f"source: {results[0]['source_mb_per_hour']:.1f} MB of FLAC per hour of audio")
    verdicts = checks(*results)
    for line, ok in verdicts:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "checks": [{"check": c, "ok": ok} for c, ok in verdicts]},
                                        indent=2) + "\n")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
