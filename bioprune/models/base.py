"""The interface every model backend (RNA-FM, ESM-C) implements.

Training, influence scoring and evaluation only talk to :class:`MaskedLM`, never to fair-esm or
transformers directly, so a new backend is one new module.

Data flow of one forward pass::

    tokens [B, L] --embed--> hidden [B, L, H] --head_dense--> y [B, L, H']
                  --head_after_dense--> logits [B, L, V]

``head_dense`` is the default influence parameter block W (the dense layer inside the MLM head);
``last_block`` is the alternative block. ``embed`` runs the whole trunk, so influence scoring with W in
the head can run it under ``torch.no_grad()``.

What callers may use (the contract; a backend sets or implements each of these):

- ``tokenizer`` (:class:`~bioprune.models.tokenizer.CharTokenizer`): residues -> ids, no specials;
- ``tokens`` (:class:`TokenSpec`): the special ids and the residues masking substitutes;
- ``alphabet``, ``max_tokens``; ``spec`` (the registry's ModelSpec, set when built or loaded);
- ``arch()``: the shape fields of a ModelSpec;
- ``encode``/``batch``/``converter``: rows ``<cls> residues <eos>`` through the one batch converter
  (:mod:`bioprune.models.batching`); backends do not build rows themselves;
- ``embed``, ``frozen_embed``, ``embed_with_attention``, ``head_dense``, ``head_after_dense``,
  ``last_block``, ``forward``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from bioprune.models.batching import BatchConverter

if TYPE_CHECKING:
    from bioprune.models.registry import ModelSpec
    from bioprune.models.tokenizer import CharTokenizer


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

    tokenizer: CharTokenizer
    """Residue characters <-> token ids (``encode_residues``: no <cls>/<eos>; ``vocab``: every token)."""
    tokens: TokenSpec
    """Special token ids, vocabulary size and the residues masking may substitute."""
    alphabet: str
    """``"rna"`` or ``"protein"`` (:data:`bioprune.alphabet.BACKEND_ALPHABET`)."""
    max_tokens: int
    """Longest input the model takes, <cls>/<eos> included (RNA-FM: 1024)."""
    spec: ModelSpec
    """Backend, size and shape; set by :mod:`bioprune.models.registry` when it builds or loads a model
    (read it through ``registry.spec_of``, which also describes a model built directly)."""

    def arch(self) -> dict:
        """The shape of the model: ``layers``, ``hidden``, ``heads``, ``ffn``, ``max_tokens`` (the
        fields of a ModelSpec besides backend and size). Every registered backend implements it; only a
        stand-in model (tests) may leave it out."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its architecture")

    @property
    def window(self) -> int:
        """Residues the model sees at once (``max_tokens`` less <cls> and <eos>)."""
        return self.max_tokens - 2

    def _set_tokenizer(self, tokenizer: CharTokenizer, random_residues: str, vocab_size: int) -> None:
        """Set ``tokenizer`` and the ``tokens`` spec read from its vocabulary (for backends' __init__)."""
        idx = tokenizer.index
        self.tokenizer = tokenizer
        self.tokens = TokenSpec(
            vocab_size=vocab_size,
            pad_idx=idx["<pad>"],
            mask_idx=idx["<mask>"],
            cls_idx=idx["<cls>"],
            eos_idx=idx["<eos>"],
            unk_idx=idx["<unk>"],
            residue_ids=tuple(idx[c] for c in random_residues),
        )

    @property
    def converter(self) -> BatchConverter:
        """The batch converter of this model's tokens (rows ``<cls> residues <eos>``, padded)."""
        return BatchConverter(self.tokens)

    def encode(self, seq: str) -> list[int]:
        """Token ids of one sequence, with <cls>/<eos> added.

        Raises ValueError naming the offending character when the sequence does not fit the alphabet.
        RNA backends turn T into U first."""
        return self.converter.frame(self.tokenizer.encode_residues(seq)).tolist()

    def batch(self, seqs: list[str]) -> torch.Tensor:
        """Tokenise (:meth:`encode`) and pad to the longest sequence of the batch (never to a fixed
        window)."""
        return torch.from_numpy(self.converter.pad([self.encode(s) for s in seqs]))

    @abstractmethod
    def embed(self, tokens: torch.Tensor, *, mask_pads: bool = True) -> torch.Tensor:
        """Final hidden states [B, L, H], the input of ``head_dense``.

        ``mask_pads=False`` reproduces the official RNA-FM scoring code: pad positions are attended to."""

    def frozen_embed(self, dtype: torch.dtype) -> Callable[..., torch.Tensor]:
        """An ``embed`` for many no-grad calls with the weights as they are now, ``f(tokens, mask_pads=)``.

        It gives exactly what :meth:`embed` gives, under bf16 autocast when ``dtype`` is bf16 (callers keep
        the autocast context), but a backend may prepare its weights once for it (RNA-FM: a bf16 copy of
        every trunk matmul weight, which autocast would otherwise cast again on every call, since its
        weight cache only serves weights used under autograd). Not for
        autograd; make a new one after the weights change. The default is :meth:`embed` itself."""
        return self.embed

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
