"""The page under load: `audiolm serve` on 127.0.0.1 and N concurrent gradio_client users, as new
visitors would come: each sends R requests, one after another, all users at once.

    python -m benchmarks.serve_load --run runs/demo [--users 8] [--requests 3] [--seconds 4] [--json F]

With `--prompt-lengths LO HI` every user continues a prompt of its own length, spread evenly from LO
to HI seconds (held-out speech of one voice of the run's corpus, utterances joined until long enough):
visitors with different prompts, whom the server must still batch together (issue 40: each LM's
sequences left-padded to the longest row's). Without it, users share the run's 2 s held-out prompts.

User 0 first uploads a corrupt file (it must get a message naming the problem), user 1 leaves in the
middle of its first continuation (it cancels once the first audio has come), the last user goes
through the run's other tabs (convert, and speak and transcribe where the run has them); the others
continue a held-out prompt of the run. After the load one more continuation checks that the server
still serves. Prints a Markdown table: requests answered, latency p50 / p95 (press to whole result)
and to the first streamed audio, the batches the server formed and how long requests waited for
theirs (from its log), its resident memory before and after. The server runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

BATCH_LINE = re.compile(r"(\d+) continuation\(s\) of [\d.]+ s together, longest wait ([\d.]+) s, generated in ([\d.]+) s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the server's generation process), in MB."""
    total, pids = 0.0, [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
            continue
    return total


class Server:
    """`audiolm serve` in a child process, its log lines kept (`lines`)."""

    def __init__(self, run: Path, port: int, *extra: str, timeout: float = 300.0):
        self.port, self.lines = port, []
        self.process = subprocess.Popen([sys.executable, "-m", "audiolm.cli", "serve", "--model", str(run), "--port",
                                         str(port), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                time.sleep(0.5)
                raise RuntimeError(f"audiolm serve exited: {''.join(self.lines)[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(1)
        self.stop()
        raise TimeoutError(f"audiolm serve did not answer on port {port} within {timeout:g} s")

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def rss_mb(self) -> float:
        return _rss_mb(self.process.pid)

    def batches(self) -> list[tuple[int, float, float]]:
        """(size, longest wait s, generation s) of every batch the server logged."""
        return [(int(m[1]), float(m[2]), float(m[3])) for line in self.lines if (m := BATCH_LINE.search(line))]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _continue(client, prompt: str, seconds: float, seed: int, leave: bool = False) -> float | None:
    """One continuation through the streamed endpoint; the time to its first streamed audio (None
    when the page does not stream). `leave`: cancel once the first audio has come.

    A visitor's browser is on another machine; these clients share the server's 2 cores, so they do
    as little as they can: they leave the files on the server (`download_files=False`: the streamed
    audio is then a playlist's FileData dict) and look at the job's outputs every 20 ms, not through
    its iterator, which polls every millisecond. Together that took the 8 clients' CPU in one load
    run from 23 s to 4.7-7.5 s (measured on 2 cores)."""
    from gradio_client import handle_file

    start = time.perf_counter()
    job = client.submit(handle_file(prompt), seconds, 0.8, seed, api_name="/continue")
    while not job.done():
        if any(isinstance(played, dict) and played.get("is_stream") for played, _, _ in job.outputs()):
            first = time.perf_counter() - start
            if leave:
                job.cancel()
            else:
                job.result()  # raises the page's message, if any
            return first
        time.sleep(0.02)
    job.result()
    return None


def load(url: str, prompts: list[str], corrupt: str, tabs: list[str], users: int, requests: int,
         seconds: float) -> list[dict]:
    """Every user's requests, all users at once; one record per request."""
    from gradio_client import Client, handle_file

    records: list[dict] = []
    lock = threading.Lock()
    start = threading.Barrier(users)
    others = [t for t in tabs if t != "continue"]

    def one(client, k: int, r: int) -> dict:
        prompt, seed = prompts[(k + r) % len(prompts)], k * requests + r
        if k == users - 1 and others:  # the other tabs, in turn
            tab = others[r % len(others)]
            args = {"convert": (handle_file(prompt), handle_file(prompts[(k + r + 1) % len(prompts)]), 0.8, seed),
                    "speak": ("The old garden was quiet this morning.", handle_file(prompt), 0.8, seed),
                    "transcribe": (handle_file(prompt),)}[tab]
            client.predict(*args, api_name=f"/{tab}")
            return {"tab": tab}
        if k == 0 and r == 0:
            client.predict(handle_file(corrupt), seconds, 0.8, seed, api_name="/continue")  # must raise
            return {"tab": "continue", "corrupt": True}
        first = _continue(client, prompt, seconds, seed, leave=k == 1 and r == 0)
        return {"tab": "continue", "first_audio": first, "left": k == 1 and r == 0}

    def user(k: int) -> None:
        client = Client(url, verbose=False, download_files=False)
        start.wait()
        for r in range(requests):
            t = time.perf_counter()
            try:
                record, ok, error = one(client, k, r), True, ""
            except Exception as err:  # a failed request is a figure, not a crash of the benchmark
                record, ok, error = {"tab": "continue", "corrupt": k == 0 and r == 0}, False, str(err)[:300]
            with lock:
                records.append({"user": k, "request": r, "seconds": time.perf_counter() - t, "ok": ok, "error": error,
                                **record})

    threads = [threading.Thread(target=user, args=(k,)) for k in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records


def held_out_prompts(run_dir: Path, lengths: list[float], folder: Path) -> list[str]:
    """One wav per length in `folder`: held-out utterances of one voice each (another voice per
    prompt where the corpus has them), joined in order until long enough, cut to the length."""
    import soundfile as sf

    from audiolm.data import shards
    from audiolm.data.corpus import read_wavs
    from audiolm.pipeline import rundir

    corpus = run_dir / "corpus"
    rate = rundir.read_marker(corpus)["sample_rate"]
    heldout = shards.load_split(corpus, "heldout")
    speakers = list(dict.fromkeys(heldout["speaker"]))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, seconds in enumerate(lengths):
        speaker = speakers[k % len(speakers)]
        rows = [i for i, s in enumerate(heldout["speaker"]) if s == speaker]
        wav, i = np.zeros(0, np.float32), 0
        while len(wav) < seconds * rate and i < len(rows):
            wav = np.concatenate([wav, read_wavs(heldout, [rows[i]], rate, rate)[0]])
            i += 1
        path = folder / f"prompt-{k:02d}-{seconds:.1f}s.wav"
        sf.write(path, wav[: round(seconds * rate)], rate)
        paths.append(str(path))
    return paths


def summarize(records: list[dict], batches: list[tuple[int, float, float]], before: float, after: float,
              still_serving: bool, wall: float) -> dict:
    valid = [r for r in records if not r.get("corrupt")]
    done = [r for r in valid if r["tab"] == "continue" and not r.get("left")]
    corrupt = [r for r in records if r.get("corrupt")]
    times = np.array([r["seconds"] for r in done if r["ok"]])
    first = np.array([r["first_audio"] for r in done if r["ok"] and r.get("first_audio") is not None])

    def pct(a: np.ndarray, q: float) -> float | None:
        return float(np.percentile(a, q)) if len(a) else None

    return {
        "requests": len(records), "valid": len(valid), "answered": sum(r["ok"] for r in valid),
        "failures": [r["error"] for r in valid if not r["ok"]],
        "corrupt_message": corrupt[0]["error"] if corrupt else None,
        "corrupt_refused": bool(corrupt) and not corrupt[0]["ok"],
        "other_tabs": sorted({r["tab"] for r in valid if r["tab"] != "continue" and r["ok"]}),
        "latency_p50": pct(times, 50), "latency_p95": pct(times, 95), "latency_max": float(times.max()) if len(times) else None,
        "first_audio_p50": pct(first, 50), "first_audio_p95": pct(first, 95),
        "batch_sizes": [b[0] for b in batches], "batch_seconds": [b[2] for b in batches],
        "queue_wait_p50": pct(np.array([b[1] for b in batches]), 50),
        "queue_wait_max": max((b[1] for b in batches), default=None),
        "rss_before_mb": before, "rss_after_mb": after, "still_serving": still_serving, "wall_seconds": wall,
    }


def table(s: dict, users: int, requests: int, seconds: float) -> str:
    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f} s"

    rows = [("requests answered", f"{s['answered']} of {s['valid']} valid (+1 corrupt upload)"),
            ("the corrupt upload", f"refused: {s['corrupt_message']}" if s["corrupt_refused"] else "NOT refused"),
            ("other tabs answered", ", ".join(s["other_tabs"]) or "none"),
            (f"latency of a {seconds:g} s continuation, p50 / p95 / max",
             f"{f(s['latency_p50'])} / {f(s['latency_p95'])} / {f(s['latency_max'])}"),
            ("first streamed audio, p50 / p95", f"{f(s['first_audio_p50'])} / {f(s['first_audio_p95'])}"),
            ("batches (continuations each)", " ".join(map(str, s["batch_sizes"]))),
            ("each batch's generation", " ".join(f"{x:.1f}" for x in s["batch_seconds"]) + " s"),
            ("wait for a batch, p50 / max", f"{f(s['queue_wait_p50'])} / {f(s['queue_wait_max'])}"),
            ("server memory before, after", f"{s['rss_before_mb']:.0f} MB, {s['rss_after_mb']:.0f} MB "
                                            f"({s['rss_after_mb'] - s['rss_before_mb']:+.0f} MB)"),
            ("serving after the load", "yes" if s["still_serving"] else "NO")]
    head = f"{users} users x {requests} requests, {s['wall_seconds']:.0f} s in all\n\n| | |\n|---|---|\n"
    return head + "\n".join(f"| {a} | {b} |" for a, b in rows)


def run(run_dir: Path, users: int = 8, requests: int = 3, seconds: float = 4.0, extra: tuple[str, ...] = (),
        prompts: list[str] | None = None) -> dict:
    """The load on `run_dir`'s page (`extra`: more `audiolm serve` arguments); `prompts`: wavs to
    continue (default: the run's held-out prompts)."""
    from gradio_client import Client

    from audiolm.web import run_examples

    prompts = prompts or [str(wav) for _, wav in run_examples(run_dir, per_group=4)]
    if not prompts:
        raise SystemExit(f"{run_dir}: no held-out prompts (continuations/*.prompt.wav); run make demo first")
    corrupt = run_dir / "continuations" / ".load-test-corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))  # a header, then garbage
    tabs = ["continue", "convert"] + [t for t, lm in (("speak", "lm-reading"), ("transcribe", "lm-transcription"))
                                      if (run_dir / lm).is_dir()]
    server = Server(run_dir, _free_port(), *extra)
    try:
        before = server.rss_mb()
        wall = time.perf_counter()
        records = load(server.url, prompts, str(corrupt), tabs, users, requests, seconds)
        wall = time.perf_counter() - wall
        try:  # one more visitor after the load
            _continue(Client(server.url, verbose=False, download_files=False), prompts[0], seconds, 0)
            still = True
        except Exception:
            still = False
        after = server.rss_mb()
    finally:
        server.stop()
        corrupt.unlink(missing_ok=True)
    return summarize(records, server.batches(), before, after, still, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--prompt-lengths", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                        help="each user a prompt of its own length, LO to HI seconds (default: the run's 2 s prompts)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    prompts = None
    if args.prompt_lengths:
        lo, hi = args.prompt_lengths
        lengths = [lo + (hi - lo) * k / max(1, args.users - 1) for k in range(args.users)]
        prompts = held_out_prompts(Path(args.run), lengths, Path(args.run) / "load-test-prompts")
    s = run(Path(args.run), args.users, args.requests, args.seconds, prompts=prompts)
    if prompts:
        s["prompt_seconds"] = [round(x, 1) for x in lengths]
    print(table(s, args.users, args.requests, args.seconds))
    if prompts:
        print(f"\nprompts: {', '.join(f'{x:.1f} s' for x in lengths)} (one per user)")
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=1))


if __name__ == "__main__":
    main()
