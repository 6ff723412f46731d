"""Many people at once: `python app.py` in a subprocess, N concurrent gradio_client sessions, then SIGTERM.

Usage: python bench/bench_load.py [--sessions 20] [--rounds 5] [--rss-rounds 10] [--repo DIR] [--concurrency N]

Prints, for the load phase (every session generates `rounds` times and fetches the files it is sent): client errors, the median and worst wait per generation, whether every session saw only its own
seeds and identical bytes for a repeated seed; for the memory phase: the server's RSS after each round of
`sessions` concurrent generations; at the end: the files the server left in its temp folders after
SIGTERM. --repo serves another checkout (e.g. an older commit in a git worktree) for before/after figures.
Run it on a quiet machine: other CPU jobs inflate every wait.
"""

import argparse
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.handlers import advanced_values  # noqa: E402
from app.models import peek  # noqa: E402

ADVANCED = advanced_values(peek(None).defaults)  # the page's defaults for the bundled model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def files_under(folder: Path) -> tuple[int, int]:
    """(file count, total bytes) under a folder."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def start_server(repo: Path, temp: Path, flags: list[str]) -> tuple[subprocess.Popen, str]:
    """The app on a free loopback port, its temp files (Gradio's cache included) under `temp`."""
    port = free_port()
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(temp / "gradio"), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *flags], cwd=repo, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(temp / "server.log", "w"))
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        try:
            client = Client(url, verbose=False, download_files=False)
            client.predict("fruit", 0, 1, *ADVANCED, api_name="/generate")  # also waits for the model to load
            return server, url
        except Exception:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited; see {temp / 'server.log'}")
            time.sleep(1)
    raise RuntimeError("the server did not become ready in 10 minutes")


class Session:
    """One person: a client of its own, and a record of every wait and error.

    Like a browser, it fetches each new file of every streamed update once (stage tiles, images), each
    checked against its declared length (gradio_client's own download_files costs the client more CPU
    than the server on 2 cores)."""

    def __init__(self, url: str, number: int):
        self.client = Client(url, verbose=False, download_files=False)
        self.http = httpx.Client(timeout=120)
        self.number = number
        self.waits, self.errors, self.wrong_seed, self.digests = [], [], 0, {}

    def generate(self, seed: int) -> None:
        start = time.perf_counter()
        try:
            job, fetched = self.client.submit("fruit", seed, 1, *ADVANCED, api_name="/generate"), {}
            for strip, images, _ in job:
                for item in strip + images:
                    url = item["image"]["url"]
                    fetched[url] = fetched.get(url) or self.http.get(url).raise_for_status().content
            strip, images, status = job.result()
            last = fetched.get(images[0]["image"]["url"]) or self.http.get(images[0]["image"]["url"]).raise_for_status().content
        except Exception as error:  # a failed call is what this benchmark counts
            self.errors.append(f"{type(error).__name__}: {str(error)[:120]}")
            return
        self.waits.append(time.perf_counter() - start)
        self.wrong_seed += f"seeds {seed}..{seed}" not in status
        self.digests.setdefault(seed, set()).add(hashlib.sha256(last).hexdigest())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="generations per session in the load phase")
    parser.add_argument("--rss-rounds", type=int, default=10, help="rounds of `sessions` generations for the RSS figures")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    parser.add_argument("--concurrency", type=int, default=None, help="passed to app.py (generations run at once)")
    args = parser.parse_args()

    temp = Path(tempfile.mkdtemp(prefix="nvg_load_"))
    (temp / "server").mkdir()
    server, url = start_server(args.repo.resolve(), temp / "server",
                               ["--concurrency", str(args.concurrency)] if args.concurrency else [])
    print(f"serving {args.repo.resolve()} at {url}; server RSS after start {rss_mb(server.pid):.0f} MB")
    sessions = [Session(url, n) for n in range(args.sessions)]

    def load(session: Session) -> None:
        seeds = [1000 * session.number + r for r in range(args.rounds)]
        for seed in seeds[:-1] + seeds[:1]:  # the last round repeats the first seed
            session.generate(seed)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.sessions) as pool:
        list(pool.map(load, sessions))
    elapsed = time.perf_counter() - start
    waits = [w for s in sessions for w in s.waits]
    errors = [e for s in sessions for e in s.errors]
    print(f"load: {args.sessions} sessions x {args.rounds} generations in {elapsed:.0f} s "
          f"({len(waits) / elapsed:.2f} images/s)")
    print(f"  client errors {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    if waits:
        print(f"  wait per generation: median {statistics.median(waits):.1f} s, worst {max(waits):.1f} s")
    print(f"  statuses naming another session's seed: {sum(s.wrong_seed for s in sessions)}")
    print(f"  repeated seeds with different bytes: {sum(len(d) > 1 for s in sessions for d in s.digests.values())}")

    rss = []
    for r in range(args.rss_rounds):
        with ThreadPoolExecutor(args.sessions) as pool:
            list(pool.map(lambda s: s.generate(500_000 + 100 * r + s.number), sessions))
        time.sleep(1)
        rss.append(rss_mb(server.pid))
    if rss:
        print(f"memory: server RSS after each round of {args.sessions} generations (MB): "
              + " ".join(f"{x:.0f}" for x in rss))
        print(f"  last vs first round: {100 * (rss[-1] / rss[0] - 1):+.1f}%; errors in these rounds: "
              f"{sum(len(s.errors) for s in sessions) - len(errors)}")
    count, size = files_under(temp / "server")
    print(f"temp files while running: {count - 1} ({size / 1e6:.1f} MB)")  # minus server.log
    server.send_signal(signal.SIGTERM)
    server.wait(60)
    count, size = files_under(temp / "server")
    print(f"temp files after SIGTERM: {count - 1} ({size / 1e6:.1f} MB) under {temp / 'server'}")


if __name__ == "__main__":
    main()
