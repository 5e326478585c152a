"""Masked-language-model training: from scratch or fine-tuning, resumable, single process or DDP.

One optimizer step consumes ``accumulate x world_size`` length-bucketed batches. The loss of a step is
the mean cross-entropy over all masked tokens of those batches (summed per batch, divided by the
step's global masked-token count), so a step's gradient does not depend on how its batches are spread
over processes: 2 processes with ``accumulate=1`` take the same step as 1 process with ``accumulate=2``.

Batches, rows and masks come from :mod:`bioprune.models.batching`. Training steps mask each batch from
its own seeded generator (random crop window, :func:`bioprune.models.masking.mask_tokens`); the
validation loss is measured on the masks the evaluation's held-out perplexity uses (drawn from each
record's id and ``seed``, first window), so the two numbers agree on the same model and sequences.

Parts: :func:`_prepare_data` (tokenise, split, batch), :class:`_Trainer` (resume, one optimizer step,
validation, the step loop with checkpoints), :func:`_report` and :func:`_write_outputs`.

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
from torch import nn
from tqdm import tqdm

from bioprune.atomic import atomic_path, output_errors, save_torch, write_json
from bioprune.errors import ConfigError
from bioprune.models import data as D
from bioprune.models.base import MaskedLM
from bioprune.models.batching import mlm_loss_sum
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
    """Summed MLM cross-entropy of a batch's loss tokens (:func:`bioprune.models.batching.mlm_loss_sum`:
    the head runs on those positions only); what DDP wraps."""

    def __init__(self, lm: MaskedLM):
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor, flat_idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return mlm_loss_sum(self.lm, tokens, flat_idx, targets)


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


@dataclass
class _Data:
    """The tokenised training data of a run: split, crop lengths and the batches of each epoch."""

    fasta: Path
    store: D.TokenStore
    train_idx: np.ndarray
    val_idx: np.ndarray
    lengths: np.ndarray  # padded tokens per record after cropping to the model's window
    n_cropped: int
    settings: TrainSettings

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        s = self.settings
        rng = D.rng_for(s.seed, epoch, _BATCH_STREAM)
        return D.make_batches(self.lengths, self.train_idx, s.max_tokens_per_batch, s.max_batch_size, rng)

    def val_batches(self) -> list[np.ndarray]:
        s = self.settings
        rng = D.rng_for(s.seed, D.VAL_EPOCH, _BATCH_STREAM)
        return D.make_batches(self.lengths, self.val_idx, s.max_tokens_per_batch, s.max_batch_size, rng)


def _prepare_data(model: MaskedLM, data, work: Path, settings: TrainSettings, d: Dist) -> _Data:
    """Tokenise ``data`` into ``work/tokens`` (rank 0; the others wait) and split it."""
    fasta = D.sequences_file(data)
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
    return _Data(fasta, store, train_idx, val_idx, lengths, n_cropped, settings)


class _Trainer:
    """One run's model, optimizer, data and process group, and the parts of :func:`train`: resuming,
    one optimizer step, the step loop with its validations and checkpoints."""

    def __init__(
        self, model: MaskedLM, data: _Data, settings: TrainSettings, d: Dist, init: dict, work: Path
    ):
        self.model, self.data, self.settings, self.d = model, data, settings, d
        self.device = _device(d)
        self.n_batches = len(data.epoch_batches(0))
        self.group = settings.accumulate * d.world
        self.steps_per_epoch = math.ceil(self.n_batches / self.group)
        self.total_steps = settings.max_steps or settings.epochs * self.steps_per_epoch
        self.val_batches = data.val_batches()
        model.to(self.device)
        model.train()
        self.objective = MLMObjective(model)
        self.optimizer = torch.optim.AdamW(
            _param_groups(model, settings.weight_decay),
            lr=settings.lr,
            betas=(settings.beta1, settings.beta2),
            eps=settings.adam_eps,
        )
        self.fingerprint = _fingerprint(model, settings, data.store.meta["digest"], init, d)
        self.ckpt_path = work / "checkpoint.pt"
        self.live_log = work / "train_log.jsonl"
        # auto: bf16 on CUDA only, so a config trains the same weights on every CPU node of a cluster;
        # bf16 asks for it on CPU too (AMX / AVX-512 BF16: benchmarks/results/scoring_rnafm_size.md)
        self.use_bf16 = settings.precision == "bf16" or (
            self.device.type == "cuda" and settings.precision == "auto"
        )
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]

    def autocast(self):
        if not self.use_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # -- checkpoint / resume ---------------------------------------------------------------------------
    def resume(self) -> int | None:
        """Load ``work/checkpoint.pt`` when it was written by this run's settings and data; the step it
        holds, or None. Then cut the live log back to that step."""
        d, step = self.d, None
        if self.ckpt_path.is_file():
            ckpt = safe_load(self.ckpt_path)
            if ckpt.get("format") == CHECKPOINT_FORMAT and ckpt.get("fingerprint") == self.fingerprint:
                self.model.load_state_dict(ckpt["model"])
                self.optimizer.load_state_dict(ckpt["optimizer"])
                _set_rng_state(ckpt["rng"])
                step = int(ckpt["step"])
                if d.main:
                    log.info("resuming from %s at step %d of %d", self.ckpt_path, step, self.total_steps)
            elif d.main:
                log.warning("%s was written with other settings or data; starting afresh", self.ckpt_path)
        _barrier(d)
        if d.main:
            with output_errors(self.live_log):
                _truncate_log(self.live_log, step or 0)
        return step

    def checkpoint(self, step: int, epoch: int, k: int, logf) -> None:
        if self.d.main:
            logf.flush()
            _save_checkpoint(self.ckpt_path, self.model, self.optimizer, step, epoch, k, self.fingerprint)
        _barrier(self.d)

    # -- one optimizer step ----------------------------------------------------------------------------
    def my_batches(self, k: int, n_cached: int) -> tuple[list[int], list[float]]:
        """This process's batches (positions in the epoch's list) of step ``k`` and their weights.

        Batch j of the step's group goes to process (j - first) % world. Every process runs the same
        number of micro-batches (DDP needs it): one short of a batch re-runs the group's first batch
        with weight 0, so no data is seen twice and the step equals a 1-process step."""
        d = self.d
        first, end = k * self.group, min((k + 1) * self.group, n_cached)
        mine = [first + i * d.world + d.rank for i in range(math.ceil((end - first) / d.world))]
        weights = [1.0 if j < end else 0.0 for j in mine]
        return [j if j < end else first for j in mine], weights

    def step(self, ddp: nn.Module, step: int, epoch: int, k: int, cache: list[np.ndarray]) -> dict:
        """Optimizer step ``step`` (0-based; batch group ``k`` of ``epoch``); its log entry."""
        s, d, device, model = self.settings, self.d, self.device, self.model
        mine, weights = self.my_batches(k, len(cache))
        store = self.data.store
        batches = [
            D.make_batch(store, cache[j], model.tokens, model.max_tokens, s.seed, epoch, j, s.mask_prob)
            for j in mine
        ]
        real = [b for b, w in zip(batches, weights, strict=True) if w]
        pad = model.tokens.pad_idx
        n_masked, n_tokens = _all_sum(
            [sum(b.n_masked for b in real), sum(b.n_tokens(pad) for b in real)], d, device
        )
        lr = lr_at(step, self.total_steps, s)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        loss_sum = 0.0
        for i, (b, weight) in enumerate(zip(batches, weights, strict=True)):
            sync = i == len(batches) - 1
            ctx = ddp.no_sync() if (d.world > 1 and not sync) else contextlib.nullcontext()
            with ctx:
                b = b.to(device)
                with self.autocast():
                    loss = ddp(b.tokens, b.flat_idx, b.targets)
                # DDP averages gradients over processes; scale so the step's loss is a token mean
                (loss * (weight * d.world / n_masked)).backward()
                loss_sum += weight * float(loss.detach())
        # the pre-clipping norm is logged; an infinite threshold measures without clipping
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, s.grad_clip or math.inf))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        (total_loss,) = _all_sum([loss_sum], d, device)
        return {
            "kind": "train",
            "step": step + 1,
            "epoch": epoch,
            "lr": lr,
            "loss": total_loss / n_masked,
            "masked": int(n_masked),
            "tokens": int(n_tokens),
            "grad_norm": grad_norm,
        }

    # -- validation ------------------------------------------------------------------------------------
    def validate(self) -> dict | None:
        """Validation loss and perplexity, on the masks the evaluation's perplexity uses
        (:func:`bioprune.models.data.validation_batch`: by record id, seed ``settings.seed``)."""
        if not self.val_batches:
            return None
        s, d, model = self.settings, self.d, self.model
        total = count = 0.0
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for j in range(d.rank, len(self.val_batches), d.world):
                b = D.validation_batch(
                    self.data.store, self.val_batches[j], model.tokens, model.max_tokens, s.seed, s.mask_prob
                ).to(self.device)
                with self.autocast():
                    total += float(self.objective(b.tokens, b.flat_idx, b.targets))
                count += b.n_masked
        model.train(was_training)
        total, count = _all_sum([total, count], d, self.device)
        loss = total / count
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}

    # -- the step loop ---------------------------------------------------------------------------------
    def loop(self, step: int, started: float) -> tuple[int, dict]:
        """Run optimizer steps from ``step`` to the budget (or ``stop_after_steps``), logging each,
        validating every ``eval_every`` and checkpointing every ``checkpoint_every`` steps. Returns the
        step reached and the run's counters (``stopped_early``, ``last_train_loss``, ``tokens_seen``)."""
        s, d = self.settings, self.d
        ddp = self.objective
        if d.world > 1:
            ddp = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        bar = tqdm(
            total=self.total_steps,
            initial=step,
            desc="train",
            unit="step",
            disable=not d.main,
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        cache_epoch, cache = -1, []
        run = {"stopped_early": False, "last_train_loss": None, "tokens_seen": 0}
        logf_ctx = open(self.live_log, "a") if d.main else contextlib.nullcontext()
        with output_errors(self.live_log.parent), logf_ctx as logf:
            while step < self.total_steps:
                epoch, k = divmod(step, self.steps_per_epoch)
                if epoch != cache_epoch:
                    cache_epoch, cache = epoch, self.data.epoch_batches(epoch)
                entry = self.step(ddp, step, epoch, k, cache)
                step += 1
                run["last_train_loss"] = entry["loss"]
                run["tokens_seen"] += entry["tokens"]
                bar.update(1)
                bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{entry['lr']:.2e}", refresh=False)
                if d.main:
                    _write_log(logf, **entry, elapsed_s=round(time.time() - started, 3))
                if s.eval_every and step % s.eval_every == 0 and step < self.total_steps:
                    val = self.validate()
                    if d.main and val:
                        _write_log(logf, kind="val", step=step, **val)
                        log.info("step %d: validation loss %.4f (perplexity %.2f)", step, *val.values())
                if s.stop_after_steps and step >= s.stop_after_steps and step < self.total_steps:
                    run["stopped_early"] = True
                    break
                if step % s.checkpoint_every == 0 and step < self.total_steps:
                    self.checkpoint(step, epoch, k, logf)
        bar.close()
        return step, run


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
    out = Path(out_dir)
    work = out / "work"
    started = time.time()
    data_ = _prepare_data(model, data, work, settings, d)
    t = _Trainer(model, data_, settings, d, init or {}, work)
    resumed_from = t.resume()
    step = resumed_from or 0
    if d.main:
        log.info(
            "training %s (%s parameters) on %d sequences (%d held out), %d batches/epoch, %d steps, "
            "%d process(es) on %s%s",
            spec_of(model).size,
            f"{param_count(model):,}",
            len(data_.train_idx),
            len(data_.val_idx),
            t.n_batches,
            t.total_steps,
            d.world,
            t.device,
            ", bf16 autocast" if t.use_bf16 else "",
        )
    step, run = t.loop(step, started)
    if run["stopped_early"]:
        if d.main:
            log.warning("stopping after step %d as asked (--stop-after-steps); rerun to resume", step)
        _barrier(d)
        return {"stopped_at_step": step}
    last_val = t.validate()
    report = _report(t, step, resumed_from, run, last_val, init or {}, started, extra_report or {})
    if d.main:
        _write_outputs(t, out, step, last_val, report)
    _barrier(d)
    return report


# -- report and outputs ------------------------------------------------------------------------------
def _report(
    t: _Trainer, step: int, resumed_from, run: dict, last_val, init: dict, started: float, extra: dict
) -> dict:
    model, data, store = t.model, t.data, t.data.store
    return {
        "model": spec_of(model).to_dict(),
        "parameters": param_count(model),
        "init": init,
        "data": {
            "file": str(data.fasta),
            "digest": store.meta["digest"],
            "sequences": store.n,
            "empty_skipped": store.meta.get("empty", 0),
            "residues": store.meta.get("residues"),
            "train_sequences": len(data.train_idx),
            "val_sequences": len(data.val_idx),
            "cropped_to_max_tokens": data.n_cropped,
        },
        "settings": asdict(t.settings),
        "world_size": t.d.world,
        "device": str(t.device),
        "bf16_autocast": t.use_bf16,
        "steps": step,
        "steps_per_epoch": t.steps_per_epoch,
        "batches_per_epoch": t.n_batches,
        "epochs_completed": round(step / t.steps_per_epoch, 4),
        "tokens_seen_this_run": run["tokens_seen"],
        "resumed_from_step": resumed_from,
        "final_train_loss": run["last_train_loss"],
        "val_loss": last_val["val_loss"] if last_val else None,
        "val_perplexity": last_val["val_ppl"] if last_val else None,
        "uniform_loss": math.log(len(model.tokenizer.vocab)),
        "elapsed_s": round(time.time() - started, 2),
        **extra,
    }


def _write_outputs(t: _Trainer, out: Path, step: int, last_val, report: dict) -> None:
    """Rank 0: the final validation log line, ``model.pt``, the log, the report; then remove work/."""
    if last_val:
        with output_errors(t.live_log), open(t.live_log, "a") as logf:
            _write_log(logf, kind="val", step=step, **last_val)
        log.info("final validation loss %.4f (perplexity %.2f)", last_val["val_loss"], last_val["val_ppl"])
    t.model.to("cpu")
    save_model(t.model, out / "model.pt")
    with atomic_path(out / "train_log.jsonl") as tmp:
        shutil.copyfile(t.live_log, tmp)
    write_json(out / "train_report.json", report)
    if not t.settings.keep_work:
        shutil.rmtree(t.live_log.parent, ignore_errors=True)


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
