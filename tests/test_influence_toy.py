"""A tiny test-only MaskedLM (RNA-FM-like layout, time-first blocks like fair-esm) and checks that it
honours the MaskedLM contract the influence code relies on. Imported by the other influence tests."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bioprune.alphabet import RNA_FM_TOKENS
from bioprune.models.base import MaskedLM, TokenSpec

_INDEX = {t: i for i, t in enumerate(RNA_FM_TOKENS)}


class ToyBlock(nn.Module):
    """Pre-LN transformer block on [L, B, H] inputs with a [B, L] padding mask (True = pad)."""

    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, ffn)
        self.fc2 = nn.Linear(ffn, hidden)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        seq_len, bsz, hidden = x.shape
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)

        def split(t):  # [L, B, H] -> [B, heads, L, d]
            return t.reshape(seq_len, bsz, self.heads, hidden // self.heads).permute(1, 2, 0, 3)

        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(hidden // self.heads)
        if pad_mask is not None:
            scores = scores.masked_fill(pad_mask[:, None, None, :], float("-inf"))
        attn = scores.softmax(-1) @ split(v)  # [B, heads, L, d]
        x = x + self.out(attn.permute(2, 0, 1, 3).reshape(seq_len, bsz, hidden))
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return x, None  # fair-esm's layers also return (x, attention)


class ToyLM(MaskedLM):
    alphabet = "rna"

    def __init__(self, hidden: int = 16, layers: int = 2, heads: int = 2, ffn: int = 32, max_len: int = 128):
        super().__init__()
        self.tokens = TokenSpec(
            vocab_size=len(RNA_FM_TOKENS),
            pad_idx=_INDEX["<pad>"],
            mask_idx=_INDEX["<mask>"],
            cls_idx=_INDEX["<cls>"],
            eos_idx=_INDEX["<eos>"],
            unk_idx=_INDEX["<unk>"],
            residue_ids=tuple(_INDEX[c] for c in "ACGU"),
        )
        self.embed_tokens = nn.Embedding(len(RNA_FM_TOKENS), hidden)
        self.embed_positions = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(ToyBlock(hidden, heads, ffn) for _ in range(layers))
        self.final_ln = nn.LayerNorm(hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.head_ln = nn.LayerNorm(hidden)
        self.head_bias = nn.Parameter(torch.zeros(len(RNA_FM_TOKENS)))

    def encode(self, seq: str) -> list[int]:
        ids = [self.tokens.cls_idx]
        for c in seq.upper().replace("T", "U"):
            if c not in _INDEX or _INDEX[c] < 4 or _INDEX[c] > 19:
                raise ValueError(f"character {c!r} is not an RNA residue")
            ids.append(_INDEX[c])
        return ids + [self.tokens.eos_idx]

    def embed(self, tokens: torch.Tensor, *, mask_pads: bool = True) -> torch.Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed_tokens(tokens) + self.embed_positions(pos)[None]
        pad = tokens.eq(self.tokens.pad_idx) if mask_pads else None
        x = x.transpose(0, 1)
        for blk in self.blocks:
            x, _ = blk(x, pad)
        return self.final_ln(x).transpose(0, 1)

    @property
    def head_dense(self) -> nn.Linear:
        return self.dense

    def head_after_dense(self, y: torch.Tensor) -> torch.Tensor:
        return F.linear(self.head_ln(F.gelu(y)), self.embed_tokens.weight) + self.head_bias

    @property
    def last_block(self) -> nn.Module:
        return self.blocks[-1]


def toy_model(seed: int = 0, dtype: torch.dtype = torch.float64, **kw) -> ToyLM:
    torch.manual_seed(seed)
    model = ToyLM(**kw).to(dtype).eval()
    with torch.no_grad():  # random non-trivial head so gradients are not degenerate
        model.head_bias.normal_(0, 0.1)
    return model


def test_toy_forward_is_head_of_embed():
    m = toy_model()
    toks = m.batch(["ACGU", "GGCAUU"])
    assert toks.shape == (2, 8)
    assert torch.equal(toks[0, 6:], torch.full((2,), m.tokens.pad_idx))
    ref = m.head_after_dense(m.head_dense(m.embed(toks)))
    assert torch.allclose(m(toks), ref)


def test_toy_padding_mask_isolates_real_tokens():
    m = toy_model()
    alone = m.embed(m.batch(["ACGU"]))
    padded = m.embed(m.batch(["ACGU", "GGCAUUACG"]))[:1, :6]
    assert torch.allclose(alone, padded)
    unmasked = m.embed(m.batch(["ACGU", "GGCAUUACG"]), mask_pads=False)[:1, :6]
    assert not torch.allclose(alone, unmasked)  # compat: pads are attended to


def test_toy_encode_rejects_bad_residue():
    with pytest.raises(ValueError, match="'X'"):
        toy_model().encode("ACXG")
