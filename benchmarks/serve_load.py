"""The page under load: `audiolm serve` on 127.0.0.1 and N concurrent gradio_client users, each
sending R four-second continuations of a held-out prompt of the run, as new visitors would.

    python -m benchmarks.serve_load --run runs/demo [--users 8] [--requests 3] [--seconds 4]

Prints one line per user and a table: requests answered, latency p50 / p95 (press to result), the
server's resident memory before and after. The server runs in its own process (`audiolm serve`),
so its memory is measured as a visitor's machine would not see it but an operator would.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run: Path, port: int, timeout: float = 300.0) -> subprocess.Popen:
    """`audiolm serve` in a child process; returns once it answers on `port`."""
    server = subprocess.Popen([sys.executable, "-m", "audiolm.cli", "serve", "--model", str(run), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"audiolm serve exited: {server.stdout.read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(1)
    server.kill()
    raise TimeoutError(f"audiolm serve did not answer on port {port} within {timeout:g} s")


def load(url: str, prompt: str, users: int, requests: int, seconds: float) -> list[dict]:
    """Every user's requests, sent one after another, all users at once; one record per request."""
    from gradio_client import Client, handle_file

    records: list[dict] = []
    lock = threading.Lock()
    start = threading.Barrier(users)

    def user(k: int) -> None:
        client = Client(url, verbose=False)
        start.wait()
        for r in range(requests):
            t = time.perf_counter()
            try:
                client.predict(handle_file(prompt), seconds, 0.8, k * requests + r, api_name="/continue")
                ok, error = True, ""
            except Exception as err:  # a failed request is a figure, not a crash of the benchmark
                ok, error = False, str(err)[:200]
            with lock:
                records.append({"user": k, "request": r, "seconds": time.perf_counter() - t, "ok": ok, "error": error})

    threads = [threading.Thread(target=user, args=(k,)) for k in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    from audiolm.web import run_examples

    examples = run_examples(Path(args.run))
    if not examples:
        raise SystemExit(f"{args.run}: no held-out prompts (continuations/*.prompt.wav); run make demo first")
    port = _free_port()
    server = start_server(Path(args.run), port)
    try:
        before = _rss_mb(server.pid)
        wall = time.perf_counter()
        records = load(f"http://127.0.0.1:{port}/", examples[0][1], args.users, args.requests, args.seconds)
        wall = time.perf_counter() - wall
        after = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    times = np.array([r["seconds"] for r in records if r["ok"]])
    failed = [r for r in records if not r["ok"]]
    print(f"{args.users} users x {args.requests} continuations of {args.seconds:g} s, {wall:.1f} s in all")
    print(f"answered {len(times)} of {len(records)}" + (f"; first failure: {failed[0]['error']}" if failed else ""))
    if len(times):
        print(f"latency p50 {np.percentile(times, 50):.1f} s, p95 {np.percentile(times, 95):.1f} s, "
              f"max {times.max():.1f} s")
    print(f"server resident memory {before:.0f} MB before, {after:.0f} MB after ({after - before:+.0f} MB)")


if __name__ == "__main__":
    main()
