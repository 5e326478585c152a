"""Masked-language-model training: from scratch or fine-tuning, resumable, single process or DDP.

One optimizer step consumes ``accumulate x world_size`` length-bucketed batches. The loss of a step is
the mean cross-entropy over all masked tokens of those batches (summed per batch, divided by the
step's global masked-token count), so a step's gradient does not depend on how its batches are spread
over processes: 2 processes with ``accumulate=1`` take the same step as 1 process with ``accumulate=2``.

Output folder::

    model.pt            final model (bioprune model format, see bioprune.models.registry)
    train_log.jsonl     one line per optimizer step ({"kind": "train", ...}) and per evaluation ("val")
    train_report.json   settings, data counts, final train/validation loss and perplexity (written last)
    work/               tokenised data, checkpoint.pt and the live log; removed after success

Resuming: rerunning with the same settings and data continues from ``work/checkpoint.pt`` (model,
optimizer, schedule position, RNG state, data position) and reaches the same weights as an
uninterrupted run. A checkpoint from different settings or data is discarded with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bioprune.atomic import atomic_path, output_errors, save_torch
from bioprune.errors import ConfigError
from bioprune.models import data as D
from bioprune.models.base import MaskedLM
from bioprune.models.checkpoint import safe_load
from bioprune.models.registry import param_count, save_model, spec_of
from bioprune.models.train_settings import TrainSettings

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "bioprune.train-checkpoint"
_BATCH_STREAM = 2**32 - 1  # SeedSequence word reserved for the batch-order generator


# -- distributed helpers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def current_dist() -> Dist:
    if tdist.is_available() and tdist.is_initialized():
        return Dist(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Dist()


def init_distributed_from_env() -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a no-op for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not tdist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        tdist.init_process_group(backend=backend)
    return current_dist()


def _barrier(d: Dist) -> None:
    if d.world > 1:
        tdist.barrier()


def _all_sum(values: list[float], d: Dist, device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if d.world > 1:
        tdist.all_reduce(t)
    return t.tolist()


# -- schedule ----------------------------------------------------------------------------------------
def lr_at(step: int, total: int, s: TrainSettings) -> float:
    """Learning rate of the optimizer step ``step`` (0-based): linear warm-up, then decay."""
    warm = int(round(s.warmup * total)) if s.warmup < 1 else int(s.warmup)
    warm = min(warm, total)
    if step < warm:
        return s.lr * (step + 1) / warm
    if s.schedule == "constant":
        return s.lr
    p = min(1.0, (step - warm) / max(1, total - warm))
    shape = 0.5 * (1 + math.cos(math.pi * p)) if s.schedule == "cosine" else 1 - p
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * shape)


class MLMObjective(nn.Module):
    """Summed MLM cross-entropy of a batch; the head runs on masked positions only (what DDP wraps)."""

    def __init__(self, lm: MaskedLM):
        super().__init__()
        self.lm = lm

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.lm.embed(inputs)
        sel = labels.ne(-100)
        logits = self.lm.head_after_dense(self.lm.head_dense(hidden[sel]))
        return F.cross_entropy(logits.float(), labels[sel], reduction="sum")


def _param_groups(model: nn.Module, weight_decay: float):
    # No decay on biases and norm weights (1-D tensors), as is standard for BERT-style training.
    decay, plain = [], []
    for p in {id(p): p for p in model.parameters() if p.requires_grad}.values():
        (decay if p.ndim >= 2 else plain).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


# -- RNG state (saved for completeness; the data pipeline does not use global RNGs) -----------------
def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the loop ------------------------------------------------------------------------------------------
def _device(d: Dist) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def _fingerprint(model: MaskedLM, settings: TrainSettings, data_digest: str, init: dict, d: Dist) -> str:
    blob = json.dumps(
        {
            "spec": spec_of(model).to_dict(),
            "settings": settings.weights_dict(),
            "data": data_digest,
            "init": init,
            "world": d.world,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def train(
    model: MaskedLM,
    data: os.PathLike | str,
    out_dir: os.PathLike | str,
    settings: TrainSettings,
    *,
    init: dict | None = None,
    extra_report: dict | None = None,
) -> dict:
    """Train ``model`` on the FASTA file (or pool folder) ``data``; write outputs under ``out_dir``.

    ``init`` describes where the starting weights came from (part of the resume fingerprint and the
    report). Returns the report (on every rank; only rank 0 writes files)."""
    settings.validate()
    d = current_dist()
    device = _device(d)
    out = Path(out_dir)
    work = out / "work"
    fasta = D.sequences_file(data)
    started = time.time()

    if d.main:
        # work/ is kept across a killed run (it holds the checkpoint), so it is not staged
        with output_errors(work):
            work.mkdir(parents=True, exist_ok=True)
            D.build_store(fasta, model.tokenizer, work / "tokens")
    _barrier(d)
    store = D.open_store(work / "tokens")
    train_idx, val_idx = D.split(store, settings.val_fraction, settings.seed)
    max_tokens = model.max_tokens
    lengths = D.padded_lengths(store, max_tokens)
    if lengths.max() > settings.max_tokens_per_batch:
        raise ConfigError(
            f"max_tokens_per_batch ({settings.max_tokens_per_batch}) is smaller than the longest input "
            f"({int(lengths.max())} tokens after cropping to the model's {max_tokens}); raise it"
        )
    n_cropped = int((store.lengths > max_tokens - 2).sum())

    def epoch_batches(epoch: int) -> list[np.ndarray]:
        rng = D.rng_for(settings.seed, epoch, _BATCH_STREAM)
        return D.make_batches(lengths, train_idx, settings.max_tokens_per_batch, settings.max_batch_size, rng)

    n_batches = len(epoch_batches(0))
    group = settings.accumulate * d.world
    steps_per_epoch = math.ceil(n_batches / group)
    total_steps = settings.max_steps or settings.epochs * steps_per_epoch
    val_batches = D.make_batches(
        lengths,
        val_idx,
        settings.max_tokens_per_batch,
        settings.max_batch_size,
        D.rng_for(settings.seed, D.VAL_EPOCH, _BATCH_STREAM),
    )

    model.to(device)
    model.train()
    objective = MLMObjective(model)
    optimizer = torch.optim.AdamW(
        _param_groups(model, settings.weight_decay),
        lr=settings.lr,
        betas=(settings.beta1, settings.beta2),
        eps=settings.adam_eps,
    )
    fingerprint = _fingerprint(model, settings, store.meta["digest"], init or {}, d)
    ckpt_path = work / "checkpoint.pt"
    live_log = work / "train_log.jsonl"
    step = 0
    resumed_from = None
    if ckpt_path.is_file():
        ckpt = safe_load(ckpt_path)
        if ckpt.get("format") == CHECKPOINT_FORMAT and ckpt.get("fingerprint") == fingerprint:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            _set_rng_state(ckpt["rng"])
            step = resumed_from = int(ckpt["step"])
            if d.main:
                log.info("resuming from %s at step %d of %d", ckpt_path, step, total_steps)
        elif d.main:
            log.warning("%s was written with other settings or data; starting afresh", ckpt_path)
    _barrier(d)
    if d.main:
        with output_errors(live_log):
            _truncate_log(live_log, step)

    ddp = objective
    if d.world > 1:
        ddp = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    use_bf16 = device.type == "cuda" and settings.precision != "fp32"
    if settings.precision == "bf16" and device.type != "cuda" and d.main:
        log.warning("precision bf16 applies on CUDA only; training in fp32 on CPU")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    params = [p for g in optimizer.param_groups for p in g["params"]]

    if d.main:
        log.info(
            "training %s (%s parameters) on %d sequences (%d held out), %d batches/epoch, %d steps, "
            "%d process(es) on %s%s",
            spec_of(model).size,
            f"{param_count(model):,}",
            len(train_idx),
            len(val_idx),
            n_batches,
            total_steps,
            d.world,
            device,
            ", bf16 autocast" if use_bf16 else "",
        )
    bar = tqdm(
        total=total_steps,
        initial=step,
        desc="train",
        unit="step",
        disable=not d.main,
        file=sys.stderr,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )
    cache_epoch, cache = -1, []
    last_train_loss = None
    tokens_seen = 0
    stopped_early = False
    last_val = None
    with output_errors(work), open(live_log, "a") if d.main else contextlib.nullcontext() as logf:
        while step < total_steps:
            epoch, k = divmod(step, steps_per_epoch)
            if epoch != cache_epoch:
                cache_epoch, cache = epoch, epoch_batches(epoch)
            # batch j of this step's group goes to process (j - first) % world. Every process runs the
            # same number of micro-batches (DDP needs it): one short of a batch re-runs the group's
            # first batch with weight 0, so no data is seen twice and the step equals a 1-process step.
            first, end = k * group, min((k + 1) * group, len(cache))
            mine = [first + i * d.world + d.rank for i in range(math.ceil((end - first) / d.world))]
            weights = [1.0 if j < end else 0.0 for j in mine]
            mine = [j if j < end else first for j in mine]
            batches = [
                D.make_batch(
                    store, cache[j], model.tokens, max_tokens, settings.seed, epoch, j, settings.mask_prob
                )
                for j in mine
            ]
            real = [b for b, w in zip(batches, weights, strict=True) if w]
            n_masked, n_tokens = _all_sum(
                [sum(b.n_masked for b in real), sum(b.n_tokens for b in real)], d, device
            )
            lr = lr_at(step, total_steps, settings)
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss_sum = 0.0
            for i, (b, weight) in enumerate(zip(batches, weights, strict=True)):
                sync = i == len(batches) - 1
                ctx = ddp.no_sync() if (d.world > 1 and not sync) else contextlib.nullcontext()
                with ctx:
                    inputs = torch.from_numpy(b.inputs).to(device, non_blocking=True)
                    labels = torch.from_numpy(b.labels).to(device, non_blocking=True)
                    with autocast():
                        loss = ddp(inputs, labels)
                    # DDP averages gradients over processes; scale so the step's loss is a token mean
                    (loss * (weight * d.world / n_masked)).backward()
                    loss_sum += weight * float(loss.detach())
            # the pre-clipping norm is logged; an infinite threshold measures without clipping
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, settings.grad_clip or math.inf))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            (total_loss,) = _all_sum([loss_sum], d, device)
            last_train_loss = total_loss / n_masked
            tokens_seen += int(n_tokens)
            bar.update(1)
            bar.set_postfix(loss=f"{last_train_loss:.3f}", lr=f"{lr:.2e}", refresh=False)
            if d.main:
                _write_log(
                    logf,
                    kind="train",
                    step=step,
                    epoch=epoch,
                    lr=lr,
                    loss=last_train_loss,
                    masked=int(n_masked),
                    tokens=int(n_tokens),
                    grad_norm=grad_norm,
                    elapsed_s=round(time.time() - started, 3),
                )
            if settings.eval_every and step % settings.eval_every == 0 and step < total_steps:
                last_val = _evaluate(objective, store, val_batches, model, settings, d, device, autocast)
                if d.main and last_val:
                    _write_log(logf, kind="val", step=step, **last_val)
                    log.info("step %d: validation loss %.4f (perplexity %.2f)", step, *last_val.values())
            if settings.stop_after_steps and step >= settings.stop_after_steps and step < total_steps:
                stopped_early = True
                break
            if step % settings.checkpoint_every == 0 and step < total_steps:
                if d.main:
                    logf.flush()
                    _save_checkpoint(ckpt_path, model, optimizer, step, epoch, k, fingerprint)
                _barrier(d)
    bar.close()
    if stopped_early:
        if d.main:
            log.warning("stopping after step %d as asked (--stop-after-steps); rerun to resume", step)
        _barrier(d)
        return {"stopped_at_step": step}

    last_val = _evaluate(objective, store, val_batches, model, settings, d, device, autocast)
    report = {
        "model": spec_of(model).to_dict(),
        "parameters": param_count(model),
        "init": init or {},
        "data": {
            "file": str(fasta),
            "digest": store.meta["digest"],
            "sequences": store.n,
            "empty_skipped": store.meta.get("empty", 0),
            "residues": store.meta.get("residues"),
            "train_sequences": len(train_idx),
            "val_sequences": len(val_idx),
            "cropped_to_max_tokens": n_cropped,
        },
        "settings": asdict(settings),
        "world_size": d.world,
        "device": str(device),
        "bf16_autocast": use_bf16,
        "steps": step,
        "steps_per_epoch": steps_per_epoch,
        "batches_per_epoch": n_batches,
        "epochs_completed": round(step / steps_per_epoch, 4),
        "tokens_seen_this_run": tokens_seen,
        "resumed_from_step": resumed_from,
        "final_train_loss": last_train_loss,
        "val_loss": last_val["val_loss"] if last_val else None,
        "val_perplexity": last_val["val_ppl"] if last_val else None,
        "uniform_loss": math.log(len(model.tokenizer.vocab)),
        "elapsed_s": round(time.time() - started, 2),
        **(extra_report or {}),
    }
    if d.main:
        if last_val:
            with output_errors(live_log), open(live_log, "a") as logf:
                _write_log(logf, kind="val", step=step, **last_val)
            log.info(
                "final validation loss %.4f (perplexity %.2f)", last_val["val_loss"], last_val["val_ppl"]
            )
        model.to("cpu")
        save_model(model, out / "model.pt")
        with atomic_path(out / "train_log.jsonl") as tmp:
            shutil.copyfile(live_log, tmp)
        with atomic_path(out / "train_report.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        if not settings.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    _barrier(d)
    return report


def _evaluate(objective, store, val_batches, model, settings, d: Dist, device, autocast) -> dict | None:
    if not val_batches:
        return None
    total = count = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for j in range(d.rank, len(val_batches), d.world):
            b = D.make_batch(
                store,
                val_batches[j],
                model.tokens,
                model.max_tokens,
                settings.seed,
                D.VAL_EPOCH,
                j,
                settings.mask_prob,
            )
            with autocast():
                total += float(
                    objective(torch.from_numpy(b.inputs).to(device), torch.from_numpy(b.labels).to(device))
                )
            count += b.n_masked
    model.train(was_training)
    total, count = _all_sum([total, count], d, device)
    loss = total / count
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}


def _save_checkpoint(path: Path, model, optimizer, step, epoch, batch_in_epoch, fingerprint) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "step": step,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": _rng_state(),
    }
    save_torch(payload, path)
    log.debug("checkpoint at step %d -> %s", step, path)


def _write_log(fh, **entry) -> None:
    fh.write(json.dumps(entry) + "\n")
    fh.flush()


def _truncate_log(path: Path, step: int) -> None:
    """Keep only log lines up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError):
            break  # a line cut by a kill: drop it and everything after
    with atomic_path(path) as tmp:
        tmp.write_text("".join(x + "\n" for x in keep))
