"""Training a registry model on YT8M records: AdamW + BCE-with-logits (the paper's recipe), checkpoints,
exact resume, Ctrl-C safety and DistributedDataParallel under `torchrun`.

Read top to bottom: `train(config)` validates the settings, loads the data, builds or restores the model
and optimizer, then loops over epochs; each epoch ends with validation and a checkpoint.

Data: by default every record is read once into memory arrays (video-level YT8M is 1,152 floats a video;
frame-level records are pooled to the input spec while loading), and each epoch visits a permutation
drawn from (seed, epoch). Because the order is a pure function of (seed, epoch), a run interrupted
mid-epoch resumes at the very next batch with the same RNG state: resumed weights equal uninterrupted
ones. `stream=True` reads through `YT8MDataset` instead (for sets that do not fit in memory); it resumes
at the start of the interrupted epoch.

Checkpoints, in `out/`: `last/` and `best/` (by validation GAP), each a model folder that `load_model`
reads (model.safetensors + config.json with the vocabulary and metrics); while the run is unfinished
`last/` adds `optimizer.safetensors` (optimizer moments, RNG state, EMA or raw weights) and `state.json`
(epoch, step, best GAP, settings), which a finished run drops unless `keep_optimizer`. A checkpoint
folder is written beside its target and swapped in by rename.

Beyond the paper's recipe, all off by default except the first: the classifier bias starts at the
label prior (`bias_init`), a cosine schedule with warm-up, an EMA of the weights (warmed up), dropout
on the input features.

Several processes: `torchrun --nproc_per_node N -m vtag train ...`; gloo on CPU, nccl on GPU. Each
process takes its own slice of every epoch's permutation; `batch_size` is per process; only rank 0
validates and writes.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write_bytes, atomic_write_json
from vtag.tasks.checkpoints import (
    OPTIMIZER_FILE, STATE_FILE, drop_resume_state, find_checkpoint, holds_model, link_model_files, optimizer_tensors,
    restore_optimizer, write_checkpoint,
)
from vtag.tasks.metrics import EvaluationMetrics
from vtag.tasks.train_config import FROZEN_ON_RESUME, TrainConfig
from vtag.tasks.training_data import (
    InMemorySet, estimate_stream_steps, load_set, memory_batches, mix_batch, rank_slice, stream_batches, stream_loader,
)




# ---- the loop --------------------------------------------------------------------------------------

class _Distributed:
    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if device.startswith("cuda") else "gloo"
            torch.distributed.init_process_group(backend=backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def lr_at(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if warmup and step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr


@torch.no_grad()
def validate(model: nn.Module, data: InMemorySet, num_classes: int, device: str, batch_size: int = 1024) -> dict:
    was_training = model.training
    model.eval()
    metrics = EvaluationMetrics(num_classes)
    for start in range(0, len(data), batch_size):
        v = data.visual[start:start + batch_size].to(device)
        a = data.audio[start:start + batch_size].to(device)
        with _autocast(device):
            scores = torch.sigmoid(model(v, a).double())  # float32 sigmoid saturates to ties at 1.0
        metrics.accumulate(scores, data.labels[start:start + batch_size])
    model.train(was_training)
    return metrics.summary()


def _autocast(device: str):
    # bf16 on GPUs only: CPU autocast is slower than fp32 for these matrix sizes
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))


@dataclass
class TrainResult:
    out: Path
    epochs_done: int
    best_gap: float | None
    history: list[dict]


def train(config: TrainConfig, progress: bool = False, on_step: Callable[[dict], None] | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train as `config` says; returns where the checkpoints are and the per-epoch metrics.

    `on_step(info)` is called after every optimizer step with epoch, step, loss (tests use it to
    interrupt a run). KeyboardInterrupt saves a resumable checkpoint and propagates.
    """
    from vtag.models.registry import create_model
    from vtag.models.storage import load_model, save_model
    from vtag.io.vocab import detect_vocabulary, load_vocabulary

    config.check()
    out_dir = config.out_dir
    checkpoint = find_checkpoint(out_dir) if config.resume else None
    state: dict[str, Any] = {}
    if config.resume:
        if checkpoint is None and holds_model(out_dir):
            raise VtagError(f"{out_dir}: that run finished and kept no optimizer state, so it cannot be continued; "
                            "train a new run with --out another folder (--keep-optimizer keeps a finished run resumable)")
        if checkpoint is None:
            raise VtagError(f"{out_dir}: no checkpoint to resume (no last/{STATE_FILE}); drop --resume to start a new run")
        state = json.loads((checkpoint / STATE_FILE).read_text())
        for key in FROZEN_ON_RESUME:
            if key in state["config"]:  # a setting newer than the checkpoint keeps its default
                setattr(config, key, state["config"][key])
    elif find_checkpoint(out_dir) is not None:
        raise VtagError(f"{out_dir} already holds a run: pass --resume to continue it, or --out another folder")
    elif holds_model(out_dir):
        raise VtagError(f"{out_dir} already holds a finished run: pass --out another folder")

    from vtag.devices import resolve_device

    device = resolve_device(config.device)
    dist = _Distributed(device)
    try:
        if device == "cuda" and dist.enabled:
            device = f"cuda:{dist.local_rank}"
            torch.cuda.set_device(device)
        return _train(config, dist, device, state, checkpoint, progress, on_step, log,
                      create_model, load_model, save_model, detect_vocabulary, load_vocabulary)
    finally:
        dist.close()


def _train(config, dist, device, state, checkpoint, progress, on_step, log,
           create_model, load_model, save_model, detect_vocabulary, load_vocabulary) -> TrainResult:
    from safetensors.torch import load_file, save

    from vtag.io.paths import expand_paths

    train_paths = [str(p) for p in expand_paths(config.train)]
    valid_paths = [str(p) for p in expand_paths(config.valid)] if config.valid else []
    if not train_paths:
        raise VtagError(f"--train {config.train!r} matches no record files")
    from vtag.tasks.vocab_match import VOCABULARIES, records_vocabulary

    if config.vocab is None or str(config.vocab) in VOCABULARIES:  # a CSV of the user's own: theirs to mean
        config.vocab = records_vocabulary(train_paths, config.vocab, config.skip_bad)
        if valid_paths:
            found = detect_vocabulary(valid_paths, skip_bad=config.skip_bad)
            if found != config.vocab:
                raise VtagError(f"the --train records use the {config.vocab} vocabulary but the --valid ones "
                                f"({valid_paths[0]}...) the {found} one: validate on records of the same release")
    num_classes = len(load_vocabulary(config.vocab))
    config.input_spec = config.input_spec or "mean"

    t_load = time.perf_counter()
    if config.stream:
        train_set = None
        train_stream = stream_loader(config, train_paths, num_classes, dist)
        train_size = None
    else:
        train_set = load_set(train_paths, config.input_spec, num_classes, config.skip_bad, "training")
        train_size = len(train_set)
    valid_set = load_set(valid_paths, config.input_spec, num_classes, config.skip_bad, "validation") \
        if valid_paths and dist.main else None
    if dist.main:
        log(f"data: {train_size if train_size is not None else 'streamed'} training and "
            f"{len(valid_set) if valid_set else 0} validation videos, vocabulary {config.vocab} "
            f"({num_classes} classes), input {config.input_spec}, loaded in {time.perf_counter() - t_load:.1f} s")

    torch.manual_seed(config.seed)
    if checkpoint is not None:
        model, _ = load_model(checkpoint, map_location="cpu")
    else:
        model = create_model(config.model, num_classes=num_classes, input_spec=config.input_spec,
                             dropout=config.dropout, **config.model_settings())
        if config.bias_init == "prior" and train_set is not None:
            init_classifier_bias(model, train_set.labels, num_classes)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if config.ema else None

    epoch, step_in_epoch, global_step = 0, 0, 0
    best_gap = None
    history: list[dict] = []
    if checkpoint is not None:
        tensors = load_file(checkpoint / OPTIMIZER_FILE)
        restore_optimizer(optimizer, tensors, state["param_groups"])
        if ema is not None:  # model.safetensors holds the EMA weights
            ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
        # the exact float32 training weights (model.safetensors may be EMA or float16); without raw.*
        # tensors model.safetensors is them already
        raw = {k[len("raw."):]: v for k, v in tensors.items() if k.startswith("raw.")}
        if raw:
            model.load_state_dict(raw)
        epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        best_gap, history = state.get("best_gap"), state.get("history", [])
        torch.set_rng_state(tensors["rng.cpu.0"])
        if device.startswith("cuda") and "rng.cuda.0" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda.0"])
        if dist.main:
            log(f"resuming {checkpoint} at epoch {epoch + 1}, batch {step_in_epoch} (step {global_step})")
    else:
        torch.manual_seed(config.seed + dist.rank)  # dropout differs per process; the weights do not

    net = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)

    steps_per_epoch = (math.ceil(len(rank_slice(np.arange(train_size), 0, dist.world)) / config.batch_size)
                       if train_size is not None else estimate_stream_steps(train_paths, config, dist))
    total_steps = steps_per_epoch * config.epochs
    loss_fn = nn.BCEWithLogitsLoss()
    vocabulary_meta = {"vocabulary": config.vocab, "input_spec": config.input_spec}

    def save_checkpoint(done_epoch: int, done_steps: int, metrics: dict | None, is_best: bool) -> None:
        settings = {k: v for k, v in asdict(config).items()}
        extra = {**vocabulary_meta, "epochs_done": done_epoch, "step_in_epoch": done_steps,
                 "metrics": metrics, "train": {"records": config.train, "valid": config.valid,
                                               "settings": settings}}
        weights_model = _with_state(model, ema) if ema is not None else model

        def write_last(folder: Path) -> None:
            save_model(weights_model, folder, extra=extra, dtype=config.save_dtype)
            tensors, groups = optimizer_tensors(optimizer)
            tensors["rng.cpu.0"] = torch.get_rng_state()
            if device.startswith("cuda"):
                tensors["rng.cuda.0"] = torch.cuda.get_rng_state()
            if weights_model is not model or config.save_dtype != "float32":
                # model.safetensors then holds EMA or rounded weights; otherwise it is the exact
                # training weights already, and a second copy here would only take the disk
                tensors.update({f"raw.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
            atomic_write_bytes(folder / OPTIMIZER_FILE, save(tensors))
            payload = {"epoch": done_epoch, "step_in_epoch": done_steps, "global_step": global_step,
                       "best_gap": best_gap, "history": history, "config": settings, "param_groups": groups}
            atomic_write_json(folder / STATE_FILE, payload)

        write_checkpoint(config.out_dir / "last", write_last)
        if is_best:  # the same model files as last/ (without what resuming needs): linked, not written again
            write_checkpoint(config.out_dir / "best", lambda folder: link_model_files(config.out_dir / "last", folder))

    bar = _Progress(progress and dist.main, total_steps, global_step)
    from vtag.tasks.training_log import TrainingLog

    training_log = TrainingLog(config.out_dir) if dist.main else None  # metrics.csv + TensorBoard events
    try:
        while epoch < config.epochs:
            t0, seen, loss_sum, loss_count = time.perf_counter(), 0, 0.0, 0
            batches = (memory_batches(train_set, config, epoch, step_in_epoch, dist, num_classes)
                       if train_set is not None else stream_batches(train_stream, epoch))
            for visual, audio, target in batches:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(config, global_step, total_steps, steps_per_epoch)
                visual, audio, target = visual.to(device), audio.to(device), target.to(device)
                if config.input_dropout:
                    visual = nn.functional.dropout(visual, config.input_dropout)
                    audio = nn.functional.dropout(audio, config.input_dropout)
                if config.mixup:
                    visual, audio, target = mix_batch(visual, audio, target, config.mixup, config.seed, global_step)
                with _autocast(device):
                    logits = net(visual, audio)
                loss = loss_fn(logits.float(), target)
                loss_value = loss.item()
                if not math.isfinite(loss_value):  # every later step would be NaN too, and the checkpoints
                    raise VtagError(f"training diverged at epoch {epoch + 1}, step {global_step + 1}: the loss is "
                                    f"{loss_value}; start a new run with a lower --lr (this one: {config.lr:g})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if ema is not None:
                    # warm-up (as TF's ExponentialMovingAverage with num_updates): a flat 0.999 would
                    # still hold 0.999^1600 = 20% of the random initial weights after 12 short epochs
                    decay = min(config.ema, (1 + global_step) / (10 + global_step))
                    with torch.no_grad():
                        for key, value in model.state_dict().items():
                            if value.is_floating_point():
                                ema[key].lerp_(value, 1 - decay)
                            else:
                                ema[key].copy_(value)
                step_in_epoch += 1
                global_step += 1
                seen += len(target) * dist.world
                loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
                bar.update(global_step, epoch, loss_value, seen / (time.perf_counter() - t0))
                if on_step is not None:
                    on_step({"epoch": epoch, "step": global_step, "step_in_epoch": step_in_epoch, "loss": loss_value})
            elapsed = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "loss": loss_sum / max(1, loss_count), "seconds": elapsed,
                      "examples_per_s": seen / elapsed if elapsed else 0.0}
            is_best = False
            if dist.main:
                if valid_set is not None:
                    scored = _with_state(model, ema) if ema is not None else model
                    record["valid"] = validate(scored, valid_set, num_classes, device)
                    if best_gap is None or record["valid"]["gap"] > best_gap:
                        best_gap, is_best = record["valid"]["gap"], True
                history.append(record)
                log(_epoch_line(record, config.epochs))
            epoch, step_in_epoch = epoch + 1, 0
            if dist.main:
                save_checkpoint(epoch, 0, record.get("valid"), is_best)
                training_log.epoch_done(history)
            dist.barrier()
        if dist.main and not config.keep_optimizer:
            # Resuming was the optimizer state's only use: a finished last/ is a model folder like best/
            # (the moments alone are twice the model's size).
            drop_resume_state(config.out_dir / "last")
    except KeyboardInterrupt:
        if dist.main:
            bar.close()
            save_checkpoint(epoch, step_in_epoch if train_set is not None else 0, None, False)
            log(f"interrupted: checkpoint saved in {config.out_dir / 'last'}; continue with --resume")
        raise
    finally:
        bar.close()
    return TrainResult(config.out_dir, epoch, best_gap, history)


def init_classifier_bias(model: nn.Module, labels: list[np.ndarray], num_classes: int) -> None:
    """Start the classification layer(s) at the label prior: bias = logit((count + 1) / (N + 2)).

    With 3,862 rare classes, a zero bias makes every output start at 0.5; the first epochs then go
    into pushing 3,800 outputs down through the bias alone, which narrow models do very slowly. Only
    layers named *classifier* that output the classes are touched (not e.g. a fusion gate).
    """
    counts = np.bincount(np.concatenate([x for x in labels if x is not None] or [np.zeros(0, np.int64)]),
                         minlength=num_classes)
    prior = (counts + 1.0) / (len(labels) + 2.0)
    bias = torch.from_numpy(np.log(prior) - np.log1p(-prior)).float()
    with torch.no_grad():
        for name, module in model.named_modules():
            last = name.rsplit(".", 1)[-1]
            owner = name.split(".")[0]
            if (isinstance(module, nn.Linear) and module.out_features == num_classes and module.bias is not None
                    and "classifier" in owner and "gate" not in last):
                module.bias.copy_(bias)


def _with_state(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of `model` holding `state` (the EMA weights), for validation and saving."""
    import copy

    twin = copy.deepcopy(model)
    twin.load_state_dict(state)
    return twin


def _epoch_line(record: dict, epochs: int) -> str:
    line = (f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.5f}, "
            f"{record['examples_per_s']:.0f} ex/s, {record['seconds']:.1f} s")
    if "valid" in record:
        v = record["valid"]
        line += (f" | valid GAP {v['gap']:.4f}, Hit@1 {v['hit_at_1']:.4f}, PERR {v['perr']:.4f}, "
                 f"mAP {v['map']:.4f}, F1 micro {v['f1_micro']:.4f} / macro {v['f1_macro']:.4f} "
                 f"@ {v['threshold']}")
    return line


class _Progress:
    """A Rich progress bar (loss, examples/s, ETA) when enabled; nothing otherwise."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.bar = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.5f}"), TextColumn("{task.fields[rate]:.0f} ex/s"),
                            TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task("train", total=total, completed=done, epoch=1, loss=float("nan"), rate=0.0)
        self.bar.start()

    def update(self, step: int, epoch: int, loss: float, rate: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, epoch=epoch + 1, loss=loss, rate=rate)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


