"""What every training loop shares: processes, the seeded data order, progress, the loss log and checkpoints.

A loop (train.train_tokenizer, train.train_generator, metrics.train_evaluator) makes a `Run`, registers what
a checkpoint holds with `run.track(model=..., ema=..., optimizer=...)`, and calls `run.end_of_step` after
each step. The run writes OUT/checkpoint.pt (the tracked states, the step, the data generator's and torch's
RNG states) every --checkpoint-minutes, at SIGTERM or Ctrl-C, at --max-minutes and at the end; `--resume
OUT` continues from it on any number of processes, and the resumed run's losses are the uninterrupted run's.
Losses go to a JSON-lines log (`nvg train plot` draws it) and a tqdm progress bar with images/s and the ETA.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from .distributed import Processes

CHECKPOINT = "checkpoint.pt"


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


def checkpoint_in(folder: str | Path | None) -> Path | None:
    """The checkpoint a --resume folder holds (None for a model folder without one: weights-only resume)."""
    path = Path(folder) / CHECKPOINT if folder else None
    return path if path is not None and path.is_file() else None


class Run:
    """One training run: see the module docstring. `args` needs out, steps, batch_size, seed, device,
    log_every, checkpoint_minutes, max_minutes and resume."""

    def __init__(self, args, what: str, log_name: str = "train_log.jsonl"):
        self.args, self.what, self.out = args, what, Path(args.out)
        self.procs = Processes.start(args.device)
        self.device = self.procs.device
        self.local_batch = self.procs.local_batch(args.batch_size)
        torch.manual_seed(args.seed)
        self.generator = torch.Generator().manual_seed(args.seed)  # the data order: the same on every process
        self.tracked: dict[str, Any] = {}
        self.start_step = 0
        self.checkpoint = None
        source = checkpoint_in(args.resume)
        if source is not None:
            self.checkpoint = torch.load(source, map_location="cpu", weights_only=True)
            if self.checkpoint["what"] != what:
                raise ValueError(f"{source} is a checkpoint of the {self.checkpoint['what']}, not of the {what}")
        self.log_path = self.out / log_name
        self.started = time.time()
        self.deadline = self.started + args.max_minutes * 60
        self.last_checkpoint = self.started
        self.signalled: str | None = None
        self.progress: tqdm | None = None
        self._handlers = {}

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _on_signal(self, number: int, _frame) -> None:
        """The first SIGTERM or Ctrl-C stops the run after this step, with a checkpoint; a second one now."""
        if self.signalled:
            raise KeyboardInterrupt
        self.signalled = signal.Signals(number).name

    @property
    def spec(self) -> dict | None:
        """The model config stored in the checkpoint being resumed (None when not resuming one)."""
        return None if self.checkpoint is None else self.checkpoint["spec"]

    def track(self, spec: dict, **states: Any) -> None:
        """What a checkpoint holds: the model config (to rebuild it) and objects with a state_dict; when
        resuming, they are loaded here, with the step and the RNG states."""
        self.tracked, self.spec_to_save = states, spec
        if self.checkpoint is None:
            return
        for name, obj in states.items():
            saved = self.checkpoint["states"][name]
            obj.load_state_dict(saved)
        self.start_step = self.checkpoint["step"]
        self.generator.set_state(self.checkpoint["data_rng"])
        torch.set_rng_state(self.checkpoint["torch_rng"])
        if self.procs.is_main:
            print(f"resumed the {self.what} at step {self.start_step} (saved by {self.checkpoint['world']} "
                  f"process(es), now {self.procs.world})", file=sys.stderr)
            if self.checkpoint["batch_size"] != self.args.batch_size:
                print(f"note: the checkpoint's global batch was {self.checkpoint['batch_size']}, now "
                      f"{self.args.batch_size}", file=sys.stderr)

    def steps(self) -> range:
        """The steps left. From here a first SIGTERM or Ctrl-C ends the run after its step, with a checkpoint;
        starts the progress bar (main process only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave signals alone
                pass
        if self.procs.is_main:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.progress = tqdm(total=self.args.steps * self.args.batch_size, initial=self.start_step * self.args.batch_size,
                                 unit="img", unit_scale=True, desc=self.what, dynamic_ncols=True, file=sys.stderr,
                                 mininterval=1.0, disable=None)
        self._images_at = (time.time(), self.start_step)
        return range(self.start_step, self.args.steps)

    def log(self, step: int, **values: float) -> None:
        """Append a JSON line (step, seconds, images/s since the last line, the values averaged over the
        processes); every process calls it, the main one writes."""
        values = dict(zip(values, self.procs.mean([float(v) for v in values.values()])))
        if not self.procs.is_main:
            return
        now, (then, then_step) = time.time(), self._images_at
        self._images_at = (now, step + 1)
        record = {"step": step, "time_s": round(now - self.started, 1),
                  "images_per_s": round((step + 1 - then_step) * self.args.batch_size / max(now - then, 1e-9), 1),
                  **{k: float(f"{float(v):.6g}") for k, v in values.items()}}
        with open(self.log_path, "a") as file:
            file.write(json.dumps(record) + "\n")
        if self.progress is not None:
            self.progress.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "lr")}, refresh=False)
        if self.progress is None or self.progress.disable:  # no terminal (a job log): one line per log entry
            print(f"[{step + 1}/{self.args.steps}] " + " ".join(f"{k} {v:.4g}" for k, v in values.items())
                  + f" | {record['images_per_s']:.1f} images/s", file=sys.stderr, flush=True)

    def end_of_step(self, step: int, save: Callable[[], None], save_every: int | None = None) -> bool:
        """After `step`: checkpoint (and `save` the model folders) when due; True when the run must stop now
        (a signal, --max-minutes). Every process takes the same decision."""
        if self.progress is not None:
            self.progress.update(self.args.batch_size)
        last = step == self.args.steps - 1
        now = time.time()
        stop, due = self.procs.any(self.signalled is not None or now > self.deadline,
                                   now - self.last_checkpoint > self.args.checkpoint_minutes * 60)
        if stop or due or last or (save_every and (step + 1) % save_every == 0):
            if self.procs.is_main:
                save()
                self.save_checkpoint(step + 1)
            self.last_checkpoint = time.time()
        if stop and self.procs.is_main:
            why = f"signal {self.signalled}" if self.signalled else "--max-minutes reached"
            print(f"\nstopped after step {step + 1} ({why}); continue with --resume {self.out}", file=sys.stderr)
        return stop

    def save_checkpoint(self, next_step: int) -> None:
        """Write OUT/checkpoint.pt atomically (a partial file never replaces a good one)."""
        states = {name: obj.state_dict() for name, obj in self.tracked.items()}
        payload = {"what": self.what, "step": next_step, "spec": self.spec_to_save, "states": states,
                   "data_rng": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                   "world": self.procs.world, "batch_size": self.args.batch_size}
        partial = self.out / f".{CHECKPOINT}.partial"
        torch.save(payload, partial)
        os.replace(partial, self.out / CHECKPOINT)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)


LOSS_KEYS = ("loss", "x0_mse", "code_ce", "structure_mse", "l1", "vq", "class_loss")


def plot(args) -> None:
    """`nvg train plot LOG... --out PNG`: the chosen values (default: the losses present) against the step."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("nvg train plot needs matplotlib: pip install 'nvg-studio[train]'") from None
    logs = [path / "train_log.jsonl" if path.is_dir() else path for path in args.logs]
    for path in logs:
        if not path.is_file():
            raise SystemExit(f"no loss log at {path}")
    records = {path: [json.loads(line) for line in path.read_text().splitlines() if line.strip()] for path in logs}
    keys = args.keys.split(",") if args.keys else \
        [k for k in LOSS_KEYS if any(k in r for rs in records.values() for r in rs)]
    figure, axes = plt.subplots(len(keys), 1, figsize=(7, 2.4 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for path, rows in records.items():
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points), label=path.parent.name or str(path), linewidth=1)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("step")
    figure.tight_layout()
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out} ({', '.join(keys)})", file=sys.stderr)
