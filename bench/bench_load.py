"""Many people at once: `python app.py` in a subprocess, N concurrent gradio_client sessions, then SIGTERM.

Usage: python bench/bench_load.py [--sessions 20] [--rounds 5] [--rss-rounds 10] [--repo DIR] [--concurrency N]
                                  [--phases load,rss,actions] [--actions-rounds 50] [--visitors 20]
                                  [--visitor-rounds N]

Phases (--phases picks which run, in this order; default all):
- load: every session generates `rounds` times and fetches the files it is sent; prints client errors, the
  median and worst wait per generation, whether every session saw only its own seeds and identical bytes
  for a repeated seed.
- rss: the server's RSS after each round of `sessions` concurrent generations.
- actions (memory over time): a visitor performs every action of the app once per round, through the named
  API endpoints, with 1 image / 1 variation and fresh seeds: /generate, /regenerate (a lock), /edit_region (a
  painted mask), /edit_cluster, /sketch_generate (an example layout), /reference_generate (an example
  reference), /open_image (the PNG that round's /generate returned). It runs twice: (a) one visitor for
  `actions-rounds` rounds, after 2 priming rounds, with the RSS every 5 rounds; (b) `visitors`
  concurrent visitors for `actions-rounds // 5` rounds each (or --visitor-rounds), with the RSS
  after each round. Prints the RSS figures (first, last, max, last vs first), the median wait and the
  errors per action.
At the end: the files the server left in its temp folders after SIGTERM. --repo serves another checkout
(e.g. an older commit in a git worktree) for before/after figures.
Run it on a quiet machine: other CPU jobs inflate every wait.
"""

import argparse
import hashlib
import os
import re
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
from gradio_client import Client, handle_file
from PIL import Image

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
            for update in job:  # while streaming, the images are a no-op update (a dict), not a list
                for item in [x for part in update[:2] if isinstance(part, list) for x in part]:
                    url = item["image"]["url"]
                    fetched[url] = fetched.get(url) or self.http.get(url).raise_for_status().content
            strip, images, status = job.result()
            last = fetched.get(images[0]["image"]["url"]) or self.http.get(images[0]["image"]["url"]).raise_for_status().content
        except Exception as error:  # a failed call is what this benchmark counts
            self.errors.append(f"{type(error).__name__}: {str(error)[:120]}")
            return
        self.waits.append(time.perf_counter() - start)
        self.wrong_seed += not re.search(rf"\bseeds? {seed}\b", status)  # "seed 5" (or an older "seeds 5..5")
        self.digests.setdefault(seed, set()).add(hashlib.sha256(last).hexdigest())


ACTIONS = ["generate", "regenerate", "edit_region", "edit_cluster", "sketch_generate", "reference_generate",
           "open_image"]
PHASES = ["load", "rss", "actions"]


def editor_value(path: Path, layers: list[Path]) -> dict:
    """What the image editor sends: the background, the painted layers and their composite."""
    return {"background": handle_file(str(path)), "layers": [handle_file(str(p)) for p in layers],
            "composite": handle_file(str(path))}


def quarter_mask(folder: Path) -> Path:
    """A 256x256 RGBA PNG: the upper-right quarter opaque magenta, the rest fully transparent."""
    image = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    image.paste((255, 0, 255, 255), (128, 0, 256, 128))
    path = folder / "mask.png"
    image.save(path)
    return path


class Visitor(Session):
    """A Session that, per round, performs every action of the app once (ACTIONS, in that order) and counts
    the errors per action without stopping."""

    def __init__(self, url: str, number: int, folder: Path):
        super().__init__(url, number)
        self.folder = folder  # where the images to open are saved
        self.reset()

    def reset(self) -> None:
        self.action_errors = {name: [] for name in ACTIONS}
        self.action_waits = {name: [] for name in ACTIONS}
        self.rounds_done = 0

    def act(self, name: str, *args):
        start = time.perf_counter()
        try:
            result = self.client.predict(*args, api_name=f"/{name}")
            self.action_waits[name].append(time.perf_counter() - start)
            return result
        except Exception as error:  # counted, never fatal
            self.action_errors[name].append(f"{type(error).__name__}: {str(error)[:160]}")
            return None

    def actions_round(self, seed: int, inputs: dict) -> None:
        """Every action once, each with its own fresh seed (seed, seed + 1, ...)."""
        generated = self.act("generate", "fruit", seed, 1, *ADVANCED)
        self.act("regenerate", 1, True, 1, "", seed + 1, *ADVANCED, 1)
        self.act("edit_region", inputs["mask"], 3, "", 1, seed + 2, *ADVANCED, 1, 1.0)
        self.act("edit_cluster", 3, 0, "resample this cluster", 1, seed + 3, *ADVANCED, 1)
        self.act("sketch_generate", inputs["sketch"], 2, "fruit", seed + 4, 1, *ADVANCED)
        self.act("reference_generate", handle_file(inputs["reference"]), 2, -1, "fruit", seed + 5, 1, *ADVANCED)
        png = None
        if generated is not None:
            try:
                png = self.folder / f"visitor{self.number}_{seed}.png"
                png.write_bytes(self.http.get(generated[1][0]["image"]["url"]).raise_for_status().content)
            except Exception as error:
                self.action_errors["open_image"].append(f"fetching the generated PNG: {type(error).__name__}: {error}")
                png = None
        if png is not None:
            self.act("open_image", handle_file(str(png)))
            png.unlink()
        elif generated is None:
            self.action_errors["open_image"].append("skipped: /generate failed, no PNG to open")
        self.rounds_done += 1


def action_inputs(folder: Path) -> dict:
    """The files the actions send: the edit mask, the first example layout and the first example reference."""
    examples = ROOT / "assets" / "examples"
    sketch = sorted(examples.glob("sketch_*.png"))[0]
    mask = quarter_mask(folder)
    return {"mask": editor_value(mask, [mask]), "sketch": editor_value(sketch, []),
            "reference": str(sorted(examples.glob("reference_*.png"))[0]), "sketch_file": sketch.name}


def report_memory(label: str, rss: list[float], visitors: list[Visitor], elapsed: float) -> None:
    print(f"  {label}: {elapsed:.0f} s; RSS first {rss[0]:.0f} MB, last {rss[-1]:.0f} MB, max {max(rss):.0f} MB, "
          f"last vs first {100 * (rss[-1] / rss[0] - 1):+.1f}%")
    print("  median wait per action (s): " + ", ".join(
        f"{name} {statistics.median(waits):.1f}" if (waits := [w for v in visitors for w in v.action_waits[name]])
        else f"{name} -" for name in ACTIONS))
    print("  errors per action: " + ", ".join(f"{name} {sum(len(v.action_errors[name]) for v in visitors)}"
                                             for name in ACTIONS))
    for name in ACTIONS:
        errors = [e for v in visitors for e in v.action_errors[name]]
        if errors:
            print(f"    first {name} error: {errors[0]}")
    done = [v.rounds_done for v in visitors]
    print(f"  history reached: {min(done)}..{max(done)} rounds done per visitor "
          f"({len(ACTIONS)} actions = {len(ACTIONS)} history entries per round)")


def actions_phase(url: str, server: subprocess.Popen, rounds: int, sessions: int, few: int | None, temp: Path) -> None:
    folder = temp / "actions"
    folder.mkdir()
    inputs = action_inputs(folder)
    print(f"actions: every round {', '.join('/' + a for a in ACTIONS)}; 1 image / 1 variation each, fresh seeds; "
          f"layout {inputs['sketch_file']}, reference {Path(inputs['reference']).name}")

    # (a) one visitor, primed with 2 rounds so the first figure is after warm-up
    visitor = Visitor(url, 0, folder)
    for r in range(2):
        visitor.actions_round(10_000_000 + 10 * r, inputs)
    print(f"  (a) one visitor, {rounds} rounds after 2 priming rounds (not counted); RSS after warm-up "
          f"{rss_mb(server.pid):.0f} MB")
    visitor.reset()
    rss, start = [rss_mb(server.pid)], time.perf_counter()
    for r in range(rounds):
        visitor.actions_round(10_001_000 + 10 * r, inputs)
        if (r + 1) % 5 == 0 or r + 1 == rounds:
            rss.append(rss_mb(server.pid))
            print(f"    after round {r + 1}: {rss[-1]:.0f} MB ({time.perf_counter() - start:.0f} s)", flush=True)
    report_memory(f"(a) 1 visitor x {rounds} rounds (RSS figures: after warm-up, then every 5 rounds)",
                  rss, [visitor], time.perf_counter() - start)

    # (b) many visitors at once, each on its own session
    why = f"--actions-rounds // 5 = {rounds} // 5" if few is None else "--visitor-rounds"
    few = max(1, rounds // 5) if few is None else few
    print(f"  (b) {sessions} concurrent visitors x {few} rounds each ({why}); "
          f"RSS after each round (all visitors finish a round, then RSS)", flush=True)
    visitors = [Visitor(url, n + 1, folder) for n in range(sessions)]
    rss, start = [rss_mb(server.pid)], time.perf_counter()
    print(f"    before: {rss[-1]:.0f} MB")
    with ThreadPoolExecutor(sessions) as pool:
        for r in range(few):
            list(pool.map(lambda v: v.actions_round(20_000_000 + 100_000 * v.number + 10 * r, inputs), visitors))
            rss.append(rss_mb(server.pid))
            print(f"    after round {r + 1}: {rss[-1]:.0f} MB ({time.perf_counter() - start:.0f} s)", flush=True)
    report_memory(f"(b) {sessions} visitors x {few} rounds (RSS figures: before, then after each round)",
                  rss, visitors, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="generations per session in the load phase")
    parser.add_argument("--rss-rounds", type=int, default=10, help="rounds of `sessions` generations for the RSS figures")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    parser.add_argument("--concurrency", type=int, default=None, help="passed to app.py (generations run at once)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"which phases run, comma-separated: {','.join(PHASES)}")
    parser.add_argument("--actions-rounds", type=int, default=50, help="rounds of every action for the one visitor")
    parser.add_argument("--visitors", type=int, default=20,
                        help="concurrent visitors in the second actions part (each does actions-rounds // 5 rounds)")
    parser.add_argument("--visitor-rounds", type=int, default=None,
                        help="rounds per concurrent visitor in the second actions part (default: actions-rounds // 5)")
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}")

    temp = Path(tempfile.mkdtemp(prefix="nvg_load_"))
    (temp / "server").mkdir()
    server, url = start_server(args.repo.resolve(), temp / "server",
                               ["--concurrency", str(args.concurrency)] if args.concurrency else [])
    print(f"serving {args.repo.resolve()} at {url}; server RSS after start {rss_mb(server.pid):.0f} MB; "
          f"phases {','.join(p for p in PHASES if p in phases)}", flush=True)
    sessions = [Session(url, n) for n in range(args.sessions)] if {"load", "rss"} & set(phases) else []

    def load(session: Session) -> None:
        seeds = [1000 * session.number + r for r in range(args.rounds)]
        for seed in seeds[:-1] + seeds[:1]:  # the last round repeats the first seed
            session.generate(seed)

    if "load" in phases:
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
        print(f"  repeated seeds with different bytes: {sum(len(d) > 1 for s in sessions for d in s.digests.values())}",
              flush=True)

    if "rss" in phases:
        errors_before = sum(len(s.errors) for s in sessions)
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
                  f"{sum(len(s.errors) for s in sessions) - errors_before}", flush=True)

    if "actions" in phases:
        actions_phase(url, server, args.actions_rounds, args.visitors, args.visitor_rounds, temp)

    count, size = files_under(temp / "server")
    print(f"temp files while running: {count - 1} ({size / 1e6:.1f} MB)")  # minus server.log
    server.send_signal(signal.SIGTERM)
    server.wait(60)
    count, size = files_under(temp / "server")
    print(f"temp files after SIGTERM: {count - 1} ({size / 1e6:.1f} MB) under {temp / 'server'}")


if __name__ == "__main__":
    main()
