"""The one trainer: accelerate (devices, mixed precision, gradient accumulation, several GPUs),
warm-up + cosine learning rate (over the steps, or over `max_minutes` of wall time when that ends
first), gradient clipping, optional EMA of weights, safetensors checkpoints
every N steps with resume after a kill, TensorBoard + JSONL logs, periodic evaluation, a progress bar.

What a step does is injected: a `Task` builds the batch for a step (a pure function of the step and
the seed, so a resumed run sees the same data), computes its losses and hands each to `update(name,
loss)`, which backpropagates into the model of that name and steps its optimizer once every
`grad_accum` micro-batches. A task with two networks (a generator and its discriminator) calls
`update` once per network, in the order its algorithm needs.

Under `accelerate launch --num_processes N` each process asks the task for its rows (rank, rank + N,
...) of the step's global batch, each row a pure function of the seed, the step and its index, so no
process reads or augments another's rows; DistributedDataParallel averages the gradients, so the
data, the learning-rate schedule and the result do not depend on N. Checkpoints, logs, evaluations
and the progress bar are the main process'; a wall-clock stop is decided by it for all.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import nn
from tqdm.auto import tqdm

from audiolm.config import TrainConfig
from audiolm.files import atomic_write_text
from audiolm.train import distributed
from audiolm.train.checkpoint import latest_checkpoint, load_checkpoint, process_rng_state, save_checkpoint

Update = Callable[[str, torch.Tensor], None]
AGREE_EVERY = 10  # steps between the processes' agreements on the clock (several processes)


class Task(Protocol):
    models: dict[str, nn.Module]

    def batch(self, step: int, micro: int, rank: int, world: int) -> Any: ...  # rows rank, rank + world, ...

    def step(self, batch: Any, step: int, update: Update) -> dict[str, float]: ...

    def evaluate(self) -> dict[str, float]: ...


def lr_lambda(cfg: TrainConfig) -> Callable[[int, float], float]:
    """The learning rate's factor at `step`: linear warm-up, then a cosine to 0.1 over the remaining
    steps, or over `clock` (the share of the time budget left after warm-up that is spent) when the
    clock runs faster: a run that `max_minutes` will stop still anneals before it stops."""
    def f(step: int, clock: float = 0.0) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = max((step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps), clock)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def native_precision(mixed_precision: str) -> str:
    """`mixed_precision`, or "no" where it would be emulated: bf16 autocast on a CPU without native
    bf16 arithmetic (AVX512_BF16 or AMX) ran the demo's encoder 18x slower than fp32 (an AVX2-only
    AMD EPYC: 10.3 s per step instead of ~0.57 s), where a CPU that has it trains 1.8x faster."""
    if mixed_precision != "bf16" or torch.cuda.is_available():
        return mixed_precision
    native = any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return mixed_precision if native else "no"


def _allow_new_precision(mixed_precision: str) -> None:
    """accelerate keeps one precision per process; a process that trains a codec in fp32 and then a
    language model in bf16 (tests, notebooks) needs the accelerator state reset in between. The
    process-level state (devices, ranks) is kept."""
    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", mixed_precision)) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and embeddings only, not on gains and biases (as nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


class StepBatches(torch.utils.data.IterableDataset):
    """This process' batches of steps [start, steps), micro-batch after micro-batch, for a DataLoader
    whose workers build them ahead of the model (worker w of W builds every W-th; the loader hands them
    out in order)."""

    def __init__(self, task: Task, start: int, steps: int, grad_accum: int, rank: int, world: int):
        self.task, self.start, self.steps, self.grad_accum, self.rank, self.world = task, start, steps, grad_accum, rank, world

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        items = ((step, micro) for step in range(self.start, self.steps) for micro in range(self.grad_accum))
        for k, (step, micro) in enumerate(items):
            if k % workers == worker:
                yield self.task.batch(step, micro, self.rank, self.world)


class Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, out_dir: Path, learning_rates: dict[str, float] | None = None,
                 betas: tuple[float, float] = (0.8, 0.99)):
        self.task, self.cfg, self.out_dir = task, cfg, Path(out_dir)
        precision = native_precision(cfg.mixed_precision)
        if precision != cfg.mixed_precision:
            distributed.print_main(f"  training in fp32: this CPU has no native {cfg.mixed_precision} arithmetic "
                                   "(emulated, it is many times slower)")
        _allow_new_precision(precision)
        self.accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum,
                                       cpu=not torch.cuda.is_available())
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        if cfg.batch_size % self.world:
            raise ValueError(f"train.batch_size={cfg.batch_size} does not split over {self.world} processes; "
                             f"use a multiple of {self.world}")
        names = list(task.models)  # one optimizer per model
        # The learning rate is a function of the global step (not of how often an optimizer stepped:
        # a discriminator may start late), so a resumed run gets exactly the same schedule.
        self.base_lr = {n: (learning_rates or {}).get(n, cfg.learning_rate) for n in names}
        self.schedule = lr_lambda(cfg)
        # fused: one kernel for all parameters (16.8M LM on 2 cores: the optimizer step 29 -> 11.5 ms)
        self.optimizers = {n: torch.optim.AdamW(_decay_groups(task.models[n], cfg.weight_decay), lr=self.base_lr[n],
                                                betas=betas, fused=True) for n in names}
        for n in names:
            task.models[n], self.optimizers[n] = self.accelerator.prepare(task.models[n], self.optimizers[n])
        self.ema: dict[str, dict[str, torch.Tensor]] = {}
        self.step = self.start_step = 0
        self.started = 0.0
        self._clock = 0.0  # share of the time budget after warm-up spent (lr_lambda), agreed by all processes
        self._writer = None

    # -- bookkeeping ---------------------------------------------------------------------
    def _unwrapped(self) -> dict[str, nn.Module]:
        return {n: self.accelerator.unwrap_model(m) for n, m in self.task.models.items()}

    def resume(self) -> bool:
        path = latest_checkpoint(self.out_dir / "checkpoints")
        if path is None:
            return False
        meta = load_checkpoint(path, self._unwrapped(), self.optimizers, self.ema if self.cfg.ema_decay else None,
                               rank=self.rank)
        self.step = meta["step"]
        distributed.on_main(self._truncate_log)
        return True

    def _truncate_log(self) -> None:
        """The log as of the checkpoint: the steps a killed run did after it are done (and logged) again."""
        log = self.out_dir / "log.jsonl"
        if log.exists():
            rows = [line for line in log.read_text().splitlines() if line.strip()]
            kept = [line for line in rows if json.loads(line)["step"] <= self.step]
            if len(kept) < len(rows):
                atomic_write_text(log, "".join(line + "\n" for line in kept))

    def save(self) -> Path:
        rng = distributed.gather_rng_states(process_rng_state())  # every process': written by the main one
        return distributed.on_main(save_checkpoint, self.out_dir / "checkpoints", self.step, self._unwrapped(),
                                   self.optimizers, self.ema if self.cfg.ema_decay else None,
                                   keep=self.cfg.keep_checkpoints, rng_states=rng)

    def _evaluate(self) -> dict[str, float]:
        """The task's evaluation on the unwrapped models, in the main process (the others wait): a
        DistributedDataParallel forward in one process alone could wait for the others forever."""
        wrapped = dict(self.task.models)
        self.task.models.update(self._unwrapped())
        try:
            return distributed.on_main(self.task.evaluate)
        finally:
            self.task.models.update(wrapped)
            for model in self.task.models.values():
                model.train()

    def _mean_over_processes(self, values: dict[str, float | torch.Tensor]) -> dict[str, float]:
        """A step's logged values (floats, or tensors a task returned to spare the device a sync) as
        floats, averaged over the processes."""
        if not values:
            return {}
        stacked = torch.stack([torch.as_tensor(v, dtype=torch.float32).to(self.accelerator.device).reshape(())
                               for v in values.values()])
        if self.world > 1:
            stacked = self.accelerator.reduce(stacked, "mean")
        return dict(zip(values, stacked.tolist(), strict=True))

    def _log(self, values: dict[str, float]) -> None:
        if not self.accelerator.is_main_process:
            return
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:  # TensorBoard missing: the JSONL log still has everything
                self._writer = False
        if self._writer:
            for k, v in values.items():
                self._writer.add_scalar(k, v, self.step)
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **values}) + "\n")

    def _update_ema(self) -> None:
        decay = self.cfg.ema_decay
        for name, model in self._unwrapped().items():
            params = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
            if name not in self.ema:
                self.ema[name] = {k: v.clone() for k, v in params.items()}
            else:
                for k, v in params.items():
                    if v.is_floating_point():
                        self.ema[name][k].mul_(decay).add_(v, alpha=1 - decay)
                    else:  # counters and codebook bookkeeping follow the model
                        self.ema[name][k].copy_(v)

    # -- the loop ------------------------------------------------------------------------
    def _update(self, name: str, loss: torch.Tensor) -> None:
        model, opt = self.task.models[name], self.optimizers[name]
        # gradients are exchanged between processes once per optimizer step, not per micro-batch.
        # `Accelerator.backward` divides the loss by `gradient_accumulation_steps` itself: the sum of
        # the micro-batches' gradients is then the mean over the step's batch (dividing here as well
        # made them 1/grad_accum^2 and the clip grad_accum times looser).
        with nullcontext() if self._last_micro else self.accelerator.no_sync(model):
            self.accelerator.backward(loss)
        if not self._last_micro:
            return
        if self.cfg.grad_clip:
            self.accelerator.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
        for group in opt.param_groups:
            group["lr"] = self.base_lr[name] * self.schedule(self.step, self._clock)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def _batches(self) -> Iterator[Any]:
        """This process' batches from the current step on, built ahead in `train.data_workers` worker
        processes (none: built here, when the step needs them)."""
        cfg = self.cfg
        stream = StepBatches(self.task, self.step, cfg.steps, cfg.grad_accum, self.rank, self.world)
        workers = cfg.data_workers if cfg.data_workers >= 0 else (2 if torch.cuda.is_available() else 0)
        if workers == 0:
            return iter(stream)
        return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4,
                                                pin_memory=torch.cuda.is_available()))

    def fit(self, on_eval: Callable[[dict[str, float]], None] | None = None) -> int:
        cfg = self.cfg
        distributed.on_main(self.out_dir.mkdir, parents=True, exist_ok=True)
        resumed = self.resume()
        self.start_step = self.step  # where this run began: 0, or the checkpoint it resumed from
        if resumed:
            self.accelerator.print(f"  resuming from step {self.step}" + (f" ({self.world} processes)" if self.world > 1 else ""))
        if self.world > 1:  # dropout: a mask stream of its own per process (one process' stream is left as it was)
            torch.manual_seed(cfg.seed * 1_000_003 + self.step * 1009 + self.rank)
        start, warm, elapsed = time.monotonic(), None, 0.0
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit="step", disable=not self.accelerator.is_main_process)
        for model in self.task.models.values():
            model.train()
        batches = self._batches()
        self.started = time.time()  # training starts (stage 3 reports the seconds from its process' start)
        while self.step < cfg.steps:
            logs: dict[str, float | torch.Tensor] = {}
            for micro in range(cfg.grad_accum):
                self._last_micro = micro == cfg.grad_accum - 1
                logs = self.task.step(next(batches), self.step, self._update)
            self.step += 1
            if cfg.ema_decay:
                self._update_ema()
            bar.update(1)
            if self.step % cfg.log_every == 0:  # the only place a step's losses are read back from the device
                logged = self._mean_over_processes(logs)
                bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logged.items()})
                self._log(logged)
            # the main process' clock, agreed every AGREE_EVERY steps (an exchange between processes,
            # which waits for all of them): a time budget then ends at most that many steps late
            if self.world == 1 or self.step % AGREE_EVERY == 0 or self.step == cfg.steps:
                elapsed = distributed.agree(time.monotonic() - start)
            out_of_time = bool(cfg.max_minutes) and elapsed / 60 > cfg.max_minutes
            if warm is None and self.step >= cfg.warmup_steps:
                warm = elapsed  # the cosine's part of the budget starts here (or at a resume past warm-up)
            if cfg.max_minutes and warm is not None:
                self._clock = (elapsed - warm) / max(1e-9, 60 * cfg.max_minutes - warm)
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps or out_of_time:
                metrics = self._evaluate()
                self._log({f"eval/{k}": v for k, v in metrics.items()})
                if on_eval and self.accelerator.is_main_process:
                    on_eval(metrics)
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or out_of_time:
                self.save()
            if out_of_time:
                self.accelerator.print(f"  stopping at step {self.step}: training.max_minutes={cfg.max_minutes} reached")
                break
        bar.close()
        if self._writer:
            self._writer.close()
        return self.step
