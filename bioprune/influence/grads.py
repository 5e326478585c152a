"""Per-sample gradients of one parameter block, for a whole batch at once.

``head_dense`` (default): W is the weight of the dense layer in the MLM head, Y = X W^T + b. The trunk
runs without autograd (X is all it gives), one backward pass from the weighted token losses to Y gives
dY, and the gradient of sequence i is the closed form G_i = sum_t dY_t^T X_t over its loss tokens: one
batched matmul (bmm) over the loss tokens packed per sequence. Only loss tokens enter the head at all
(15% of the positions in mlm mode).

``last_block``: every parameter of the last transformer block. The trunk runs without autograd up to
that block (hooks capture its inputs); the rest of the model runs with autograd from the block's
output, which gives u_i = dl_i/d(out_i) for every row in one backward pass. The per-row parameter
gradients are then vjp's of the block alone, vectorised with ``torch.func.vmap(grad(...))`` over
``functional_call``; which dimension of each block input is the batch is learnt once from a probe batch
of a prime size. Should a backend's block not be vmappable, rows are done one by one (same numbers).

Both return, per batch, each sequence's loss and its flattened gradient in chunks of bounded memory.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree
from torch.func import functional_call, grad, vmap

from bioprune.influence.losses import make_batch, weighted_token_losses
from bioprune.influence.settings import InfluenceSettings
from bioprune.models.base import MaskedLM
from bioprune.models.batching import Batch

log = logging.getLogger(__name__)

GradChunks = Iterator[tuple[torch.Tensor, torch.Tensor]]  # (sequence indices [c], gradients [c, P])


@dataclass
class BatchGrads:
    losses: torch.Tensor  # [n_seqs] float64, the per-sequence loss l(z)
    chunks: GradChunks


def _bmm_fp32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bmm; bf16 inputs accumulate and return in fp32 (CUDA's out_dtype; upcast elsewhere)."""
    if a.dtype == torch.bfloat16:
        if a.is_cuda:
            try:
                return torch.bmm(a, b, out_dtype=torch.float32)
            except (RuntimeError, TypeError):  # an older torch without bf16 -> fp32 bmm
                pass
        return torch.bmm(a.float(), b.float())
    return torch.bmm(a, b)


class GradientEngine:
    """Per-sequence losses and gradients of the chosen block (see the module docstring)."""

    def __init__(self, model: MaskedLM, settings: InfluenceSettings, device: torch.device):
        self.model = model
        self.settings = settings
        self.device = device
        self.mask_pads = settings.loss_mode != "compat"
        self.bf16 = settings.use_bf16(device)
        self.param_dtype = next(model.parameters()).dtype
        self._impl: _HeadDense | _LastBlock
        if settings.block == "head_dense":
            self._impl = _HeadDense(self)
        else:
            self._impl = _LastBlock(self)

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the block's parameters, in the order of the flattened gradient."""
        return self._impl.shapes

    @property
    def n_params(self) -> int:
        return sum(int(torch.Size(s).numel()) for s in self.param_shapes.values())

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def grad_dtype(self) -> torch.dtype:
        return torch.float32 if self.bf16 else self.param_dtype

    def chunk_rows(self) -> int:
        """How many per-sample gradients fit in the memory budget."""
        per = self.n_params * torch.empty((), dtype=self.grad_dtype()).element_size()
        return max(1, (self.settings.grad_memory_mb << 20) // per)

    def batch_grads(self, batch: Batch) -> BatchGrads:
        return self._impl.batch_grads(batch.to(self.device))

    def head_losses(self, x: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss tokens' final hidden states (flattened) and their weighted losses, through the head."""
        xs = x.reshape(-1, x.shape[-1]).index_select(0, batch.flat_idx)
        logits = self.model.head_after_dense(self.model.head_dense(xs.unsqueeze(0))).squeeze(0)
        return xs, weighted_token_losses(logits, batch.targets, batch.weights)

    def seq_losses(self, token_losses: torch.Tensor, batch: Batch) -> torch.Tensor:
        out = torch.zeros(batch.n_seqs, dtype=torch.float64, device=token_losses.device)
        return out.index_add_(0, batch.seg, token_losses.detach().double())


class _HeadDense:
    def __init__(self, engine: GradientEngine):
        self.e = engine
        w = engine.model.head_dense.weight
        self.shapes = {"head_dense.weight": tuple(w.shape)}
        # the no-grad trunk, on weights prepared once for the whole pass (MaskedLM.frozen_embed)
        self.trunk = engine.model.frozen_embed(torch.bfloat16 if engine.bf16 else engine.param_dtype)

    def batch_grads(self, b: Batch) -> BatchGrads:
        e, model = self.e, self.e.model
        dense = model.head_dense
        with torch.no_grad(), e.autocast():
            x = self.trunk(b.tokens, mask_pads=e.mask_pads)
            xs = x.reshape(-1, x.shape[-1]).index_select(0, b.flat_idx)
            y = F.linear(xs, dense.weight, dense.bias)
        y = y.detach().requires_grad_(True)
        with torch.enable_grad(), e.autocast():
            logits = model.head_after_dense(y.unsqueeze(0)).squeeze(0)
            tl = weighted_token_losses(logits, b.targets, b.weights)
            (dy,) = torch.autograd.grad(tl.sum(), y)
        losses = e.seq_losses(tl, b)
        mm_dtype = torch.bfloat16 if e.bf16 else e.param_dtype
        xp = _pack(xs.detach().to(mm_dtype), b.seg, b.n_seqs)
        dp = _pack(dy.to(mm_dtype), b.seg, b.n_seqs)
        return BatchGrads(losses, self._chunks(xp, dp))

    def _chunks(self, xp: torch.Tensor, dp: torch.Tensor) -> GradChunks:
        n, c = xp.shape[0], self.e.chunk_rows()
        for a in range(0, n, c):
            g = _bmm_fp32(dp[a : a + c].transpose(1, 2), xp[a : a + c])  # [c, H', H] = sum_t dY_t^T X_t
            yield torch.arange(a, a + g.shape[0], device=g.device), g.reshape(g.shape[0], -1)


def _pack(v: torch.Tensor, seg: torch.Tensor, n: int) -> torch.Tensor:
    """[N, D] loss-token vectors grouped by sequence -> [n, S, D] zero-padded (S = most tokens of one)."""
    counts = torch.bincount(seg, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(seg.numel(), device=seg.device) - starts[seg]
    out = v.new_zeros(n, int(counts.max()), v.shape[-1])
    out[seg, pos] = v
    return out


def _first_tensor(out) -> tuple[torch.Tensor, Callable[[torch.Tensor], object]]:
    """A block's hidden-state output (a tensor, or the first tensor of a tuple) and how to put one back."""
    if isinstance(out, torch.Tensor):
        return out, lambda t: t
    if isinstance(out, (tuple, list)):
        for i, v in enumerate(out):
            if isinstance(v, torch.Tensor):
                return v, lambda t, i=i: type(out)([*out[:i], t, *out[i + 1 :]])
    raise TypeError(f"last_block returned {type(out).__name__}; expected a tensor or a tuple of tensors")


class _NotCalled(RuntimeError):
    pass


class _LastBlock:
    PROBE_SIZES = (3, 5, 7, 11, 13, 17)

    def __init__(self, engine: GradientEngine):
        self.e = engine
        self.block = engine.model.last_block
        self.params = {k: v.detach() for k, v in self.block.named_parameters()}
        self.shapes = {f"last_block.{k}": tuple(v.shape) for k, v in self.params.items()}
        self.vmap_ok = True
        try:
            self.in_dims, self.out_dim = self._probe()
            self.hooked = True
        except _NotCalled:
            # The backend runs the block's maths without calling the block module (no hook fires): do
            # one sequence at a time with autograd on the block's parameters only (same numbers).
            log.info(
                "%s.embed does not call last_block as a module; per-sequence gradients of the last "
                "block use one backward pass per sequence",
                type(engine.model).__name__,
            )
            self.hooked = False

    # -- capture -------------------------------------------------------------------------------------
    def _capture(self, tokens: torch.Tensor, with_grad_after: bool):
        """Run the trunk without autograd; return (block args, kwargs, block output hidden, embed output).
        With ``with_grad_after`` the block output is a leaf that the rest of the model is traced from."""
        cap: dict = {}

        def pre(_mod, args, kwargs):
            cap["args"], cap["kwargs"] = args, kwargs

        def post(_mod, _args, _kwargs, out):
            h, rebuild = _first_tensor(out)
            cap["out"] = h
            if not with_grad_after:
                return None
            leaf = h.detach().requires_grad_(True)
            cap["out"] = leaf
            torch.set_grad_enabled(True)  # everything after the block is traced; restored by no_grad's exit
            return rebuild(leaf)

        h1 = self.block.register_forward_pre_hook(pre, with_kwargs=True)
        h2 = self.block.register_forward_hook(post, with_kwargs=True)
        try:
            with torch.no_grad(), self.e.autocast():
                x = self.e.model.embed(tokens, mask_pads=self.e.mask_pads)
        finally:
            h1.remove()
            h2.remove()
        if "args" not in cap:
            raise _NotCalled("the model's last_block was not called by embed()")
        return cap["args"], cap["kwargs"], cap["out"], x

    def _probe(self) -> tuple[dict, int]:
        """Learn which dimension of each block input (and of its output) is the batch dimension, from a
        batch whose size appears in no other dimension."""
        model = self.e.model
        device = next(model.parameters()).device
        for b0 in self.PROBE_SIZES:
            seqs = ["A" * (4 + i % 3) for i in range(b0)]  # unequal lengths: padding masks are present
            tokens = model.batch(seqs).to(device)
            args, kwargs, out, _ = self._capture(tokens, with_grad_after=False)
            leaves, _ = pytree.tree_flatten_with_path((args, kwargs))
            in_dims, ok = {}, True
            for path, leaf in leaves:
                if isinstance(leaf, torch.Tensor):
                    dims = [d for d, s in enumerate(leaf.shape) if s == b0]
                    if len(dims) > 1:
                        ok = False
                        break
                    in_dims[pytree.keystr(path)] = dims[0] if dims else None
            out_dims = [d for d, s in enumerate(out.shape) if s == b0]
            if ok and len(out_dims) == 1:
                return in_dims, out_dims[0]
        raise RuntimeError("cannot tell the batch dimension of the last block's inputs (probe failed)")

    # -- gradients ---------------------------------------------------------------------------------
    def batch_grads(self, b: Batch) -> BatchGrads:
        if not self.hooked:
            return self._loop_batch(b)
        e = self.e
        args, kwargs, leaf, x = self._capture(b.tokens, with_grad_after=True)
        with torch.enable_grad(), e.autocast():
            _, tl = e.head_losses(x, b)
            (u,) = torch.autograd.grad(tl.sum(), leaf)
        losses = e.seq_losses(tl, b)
        n_rows = b.tokens.shape[0]
        leaves, spec = pytree.tree_flatten_with_path((args, kwargs))
        values = [v for _, v in leaves]
        batched: list[tuple[int, int]] = []
        for i, (path, v) in enumerate(leaves):
            if not isinstance(v, torch.Tensor):
                continue
            key = pytree.keystr(path)
            if key in self.in_dims:
                d = self.in_dims[key]
            else:  # an input the probe did not see (e.g. a padding mask only some batches have)
                dims = [k for k, s in enumerate(v.shape) if s == n_rows]
                if len(dims) != 1:
                    raise RuntimeError(f"cannot tell the batch dimension of last_block input {key}")
                d = dims[0]
            if d is not None:
                if v.shape[d] != n_rows:
                    raise RuntimeError(f"last_block input {key}: dim {d} is {v.shape[d]}, expected {n_rows}")
                batched.append((i, d))
        return BatchGrads(losses, self._chunks(b, values, spec, batched, u.detach()))

    def _chunks(
        self, b: Batch, values: list, spec, batched: list[tuple[int, int]], u: torch.Tensor
    ) -> GradChunks:
        e = self.e
        budget = e.chunk_rows()
        row_seq = b.row_seq
        # rows of one sequence are contiguous; chunk by whole sequences
        row_start = torch.searchsorted(row_seq, torch.arange(b.n_seqs + 1, device=row_seq.device)).tolist()
        s0 = 0
        while s0 < b.n_seqs:
            s1 = s0 + 1
            while s1 < b.n_seqs and row_start[s1 + 1] - row_start[s0] <= budget:
                s1 += 1
            r0, r1 = row_start[s0], row_start[s1]
            g_rows = self._row_grads(values, spec, batched, u, r0, r1)
            g = torch.zeros(s1 - s0, g_rows.shape[1], dtype=g_rows.dtype, device=g_rows.device)
            g.index_add_(0, row_seq[r0:r1] - s0, g_rows)
            yield torch.arange(s0, s1, device=g.device), g
            s0 = s1

    def _row_grads(self, values, spec, batched, u, r0: int, r1: int) -> torch.Tensor:
        """Flattened block gradients [r1 - r0, P] of rows r0..r1."""
        out_dim = self.out_dim
        idx = [i for i, _ in batched]
        in_dims = [d for _, d in batched]
        b_vals = [values[i].narrow(d, r0, r1 - r0) for i, d in batched]
        u_rows = u.narrow(out_dim, r0, r1 - r0)

        def one(params, row_vals, u_row, unsqueeze: bool):
            full = list(values)
            for i, d, v in zip(idx, in_dims, row_vals, strict=True):
                full[i] = v.unsqueeze(d) if unsqueeze else v
            args, kwargs = pytree.tree_unflatten(full, spec)
            h, _ = _first_tensor(functional_call(self.block, params, args, kwargs))
            if unsqueeze:
                h = h.squeeze(out_dim)
            return (h * u_row.to(h.dtype)).sum()

        names = list(self.params)
        if self.vmap_ok:
            try:
                with self.e.autocast(), warnings.catch_warnings():
                    # SDPA on CPU has no vmap batching rule: torch loops inside and says so at every call
                    warnings.filterwarnings("ignore", message="There is a performance drop")
                    g = vmap(grad(one), in_dims=(None, in_dims, out_dim, None))(
                        self.params, b_vals, u_rows, True
                    )
                return torch.cat([g[k].reshape(r1 - r0, -1) for k in names], dim=1).to(self.e.grad_dtype())
            except (RuntimeError, NotImplementedError, ValueError) as exc:
                log.warning("last_block is not vmappable (%s); computing its gradients row by row", exc)
                self.vmap_ok = False
        rows = []
        for r in range(r1 - r0):
            params = {k: v.detach().requires_grad_(True) for k, v in self.params.items()}
            row_vals = [v.narrow(d, r, 1) for v, d in zip(b_vals, in_dims, strict=True)]
            with torch.enable_grad(), self.e.autocast():
                loss = one(params, row_vals, u_rows.narrow(out_dim, r, 1), False)
                gs = torch.autograd.grad(loss, [params[k] for k in names], allow_unused=True)
            rows.append(torch.cat([_flat(gk, params[k]) for k, gk in zip(names, gs, strict=True)]))
        return torch.stack(rows).to(self.e.grad_dtype())

    def _loop_batch(self, b: Batch) -> BatchGrads:
        """One sequence at a time: embed its rows with autograd on the block's parameters only."""
        e, model = self.e, self.e.model
        names = list(self.params)
        block_params = dict(self.block.named_parameters())
        losses = torch.zeros(b.n_seqs, dtype=torch.float64, device=b.tokens.device)
        grads = []
        pad = model.tokens.pad_idx
        with _only_requires_grad(model, [block_params[k] for k in names]):
            for i, item in enumerate(b.items):
                one = make_batch([item], pad).to(e.device)
                with torch.enable_grad(), e.autocast():
                    x = model.embed(one.tokens, mask_pads=e.mask_pads)
                    _, tl = e.head_losses(x, one)
                    gs = torch.autograd.grad(tl.sum(), [block_params[k] for k in names], allow_unused=True)
                losses[i] = tl.detach().double().sum()
                grads.append(torch.cat([_flat(g, block_params[k]) for k, g in zip(names, gs, strict=True)]))
        g_all = torch.stack(grads).to(e.grad_dtype())
        c = e.chunk_rows()
        chunks = ((torch.arange(a, min(a + c, b.n_seqs)), g_all[a : a + c]) for a in range(0, b.n_seqs, c))
        return BatchGrads(losses, chunks)


def _flat(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return (g if g is not None else torch.zeros_like(like)).reshape(-1)


@contextlib.contextmanager
def _only_requires_grad(model: torch.nn.Module, params: list[torch.Tensor]):
    """Autograd traces only what depends on ``params`` (the trunk before the block runs untraced)."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    keep = {id(p) for p in params}
    try:
        for p, _ in saved:
            p.requires_grad_(id(p) in keep)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
