"""The interface every model backend (RNA-FM, ESM-C) implements.

Training, influence scoring and evaluation only talk to :class:`MaskedLM`, never to fair-esm or
transformers directly, so a new backend is one new module.

Data flow of one forward pass::

    tokens [B, L] --embed--> hidden [B, L, H] --head_dense--> y [B, L, H']
                  --head_after_dense--> logits [B, L, V]

``head_dense`` is the default influence parameter block W (the dense layer inside the MLM head);
``last_block`` is the alternative block. ``embed`` runs the whole trunk, so influence scoring with W in
the head can run it under ``torch.no_grad()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TokenSpec:
    """Special token ids and vocabulary of a backend's tokeniser."""

    vocab_size: int
    pad_idx: int
    mask_idx: int
    cls_idx: int
    eos_idx: int
    unk_idx: int
    # ids that masking may substitute as "random token" (the residues only, no specials)
    residue_ids: tuple[int, ...]


class MaskedLM(nn.Module, ABC):
    """A masked language model with a tokeniser. Subclasses: RNA-FM (fair-esm), ESM-C (transformers)."""

    tokens: TokenSpec
    alphabet: str  # "rna" or "protein"
    max_tokens: int  # longest input the model takes, <cls>/<eos> included (RNA-FM: 1024)

    @abstractmethod
    def encode(self, seq: str) -> list[int]:
        """Token ids of one sequence, with <cls>/<eos> (or the backend's equivalents) added.

        Raises ValueError naming the offending character when the sequence does not fit the alphabet.
        RNA backends turn T into U first."""

    def batch(self, seqs: list[str]) -> torch.Tensor:
        """Tokenise and pad to the longest sequence of the batch (never to a fixed window)."""
        ids = [self.encode(s) for s in seqs]
        out = torch.full((len(ids), max(map(len, ids))), self.tokens.pad_idx, dtype=torch.long)
        for i, row in enumerate(ids):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    @abstractmethod
    def embed(self, tokens: torch.Tensor, *, mask_pads: bool = True) -> torch.Tensor:
        """Final hidden states [B, L, H], the input of ``head_dense``.

        ``mask_pads=False`` reproduces the official RNA-FM scoring code: pad positions are attended to."""

    def embed_with_attention(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final hidden states [B, L, H] (as :meth:`embed`, pads masked) and every layer's attention
        probabilities [B, layers, heads, L, L] (query rows, key columns), for the attention-map structure
        heads of :mod:`bioprune.evaluate.structure_heads`."""
        raise NotImplementedError(f"{type(self).__name__} does not expose attention maps")

    @property
    @abstractmethod
    def head_dense(self) -> nn.Linear:
        """The dense layer inside the MLM head (default influence block W)."""

    @abstractmethod
    def head_after_dense(self, y: torch.Tensor) -> torch.Tensor:
        """Everything of the MLM head after ``head_dense``: y [B, L, H'] -> logits [B, L, V]."""

    @property
    @abstractmethod
    def last_block(self) -> nn.Module:
        """The last transformer block (the alternative influence block)."""

    def forward(self, tokens: torch.Tensor, *, mask_pads: bool = True) -> torch.Tensor:
        return self.head_after_dense(self.head_dense(self.embed(tokens, mask_pads=mask_pads)))
