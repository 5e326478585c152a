"""RNA-FM backend: fair-esm's ESM-1b ``ProteinBertModel`` with RNA-FM's 25-token RNA alphabet.

Architecture (as in the official code, PyPI ``rna-fm``, module ``fm``): learned positions (padding
offset, so ``max_positions + 2`` rows), a LayerNorm before and after the trunk, pre-LN transformer
blocks, and a RoBERTa LM head (dense -> GELU -> LayerNorm -> projection tied to the token embedding,
plus a bias). No dropout, no token dropout. The contact-prediction head of ``ProteinBertModel`` is
removed: nothing here uses it and DDP would otherwise see parameters without gradients.

Official weights
----------------
``RNA-FM_pretrained.pth`` (from the RNA-FM project) is a whole fairseq training checkpoint:
top-level keys ``args`` (an ``argparse.Namespace`` with ``arch='roberta_large'``, ``encoder_layers``,
``encoder_embed_dim``, ``encoder_ffn_embed_dim``, ``encoder_attention_heads``, ``max_positions``),
``model`` (the weights) and training state (``cfg``, ``criterion``, ``optimizer_history``,
``task_state``, ``extra_state``, ``last_optimizer_state``) that is ignored here. Weight keys carry the
fairseq prefix ``encoder.encoder.`` (e.g. ``encoder.encoder.layers.0.self_attn.q_proj.weight``,
``encoder.encoder.lm_head.dense.weight``, ``encoder.encoder.embed_positions.weight`` of shape
[1026, 640]); ``encoder.encoder.contact_head.regression.*`` may be present and is ignored. The
official loader (``fm.pretrained.load_model_and_alphabet_core``) strips everything up to the last
``encoder.`` / ``sentence_encoder.`` and zeroes the ``<mask>`` row of the token embedding in the
checkpoint's dict before loading it; we do the same, so both loaders give the same model, also for a
checkpoint that stores ``lm_head.weight`` untied from the embedding (that copy is loaded last into the
tied tensor, so its ``<mask>`` row stays non-zero). :func:`load_official` reads it with
``weights_only=True`` (training-state objects become inert records, see
:mod:`bioprune.models.checkpoint`).
"""

from __future__ import annotations

import math
import os
from argparse import Namespace
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from esm.data import Alphabet as EsmAlphabet
from esm.model.esm1 import ProteinBertModel
from torch import nn

from bioprune.alphabet import RNA_FM_TOKENS
from bioprune.errors import InputError
from bioprune.models.base import MaskedLM
from bioprune.models.checkpoint import check_state_dict, load_checked, safe_load
from bioprune.models.tokenizer import CharTokenizer

# The residues a BERT "random token" substitution draws from: the four real nucleotides, so that a
# corrupted position still looks like data (IUPAC ambiguity codes are rare in real pools).
RANDOM_RESIDUES = "ACGU"
CONTACT_KEYS = ("contact_head.regression.weight", "contact_head.regression.bias")


def rna_fm_alphabet() -> EsmAlphabet:
    """The official RNA-FM alphabet, rebuilt with fair-esm (same ids as ``fm.Alphabet`` theme 'rna')."""
    alphabet = EsmAlphabet(
        standard_toks=list("ACGURYKMSWBDHVN-"),
        prepend_toks=("<cls>", "<pad>", "<eos>", "<unk>"),
        append_toks=("<mask>",),
        prepend_bos=True,
        append_eos=True,
    )
    if alphabet.all_toks != RNA_FM_TOKENS:  # guards against a fair-esm change in padding to 8
        raise RuntimeError(f"fair-esm built an unexpected RNA alphabet: {alphabet.all_toks}")
    return alphabet


def init_bert_params(module: nn.Module) -> None:
    """fairseq's BERT initialisation (normal(0, 0.02), zero bias, zero padding row), as RNA-FM used."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


@dataclass(frozen=True)
class _Packed:
    """One transformer layer's matmul weights for :meth:`RnaFM.frozen_embed`: (weight, bias) pairs."""

    dtype: torch.dtype
    q: tuple[torch.Tensor, torch.Tensor]
    k: tuple[torch.Tensor, torch.Tensor]
    v: tuple[torch.Tensor, torch.Tensor]
    out: tuple[torch.Tensor, torch.Tensor]
    fc1: tuple[torch.Tensor, torch.Tensor]
    fc2: tuple[torch.Tensor, torch.Tensor]

    @classmethod
    def of(cls, layer: nn.Module, dtype: torch.dtype) -> _Packed:
        a = layer.self_attn
        lin = (a.q_proj, a.k_proj, a.v_proj, a.out_proj, layer.fc1, layer.fc2)
        return cls(dtype, *((m.weight.detach().to(dtype), m.bias.detach().to(dtype)) for m in lin))


class RnaFM(MaskedLM):
    alphabet = "rna"

    def __init__(self, layers: int, hidden: int, heads: int, ffn: int, max_tokens: int = 1024):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        esm_alphabet = rna_fm_alphabet()
        args = Namespace(
            arch="roberta_large",
            layers=layers,
            embed_dim=hidden,
            ffn_embed_dim=ffn,
            attention_heads=heads,
            max_positions=max_tokens,
            emb_layer_norm_before=True,  # RNA-FM always has it (fair-esm makes it optional)
            token_dropout=False,
        )
        self.net = ProteinBertModel(args, esm_alphabet)
        del self.net.contact_head
        self.max_tokens = max_tokens
        self.n_heads = heads
        tokenizer = CharTokenizer("RNA-FM", RNA_FM_TOKENS, translate={"T": "U"})
        self._set_tokenizer(tokenizer, RANDOM_RESIDUES, len(RNA_FM_TOKENS))
        self.net.apply(init_bert_params)

    # -- the trunk, reimplemented so that pads can be attended to (official scoring behaviour) ------
    def embed(self, tokens: torch.Tensor, *, mask_pads: bool = True) -> torch.Tensor:
        return self._trunk(tokens, mask_pads, None)

    def _trunk(self, tokens: torch.Tensor, mask_pads: bool, packed: list[_Packed] | None) -> torch.Tensor:
        net = self.net
        if tokens.shape[1] > self.max_tokens:
            raise ValueError(f"input of {tokens.shape[1]} tokens exceeds the model's {self.max_tokens}")
        padding = tokens.eq(self.tokens.pad_idx)  # [B, L]
        x = net.embed_scale * net.embed_tokens(tokens) + net.embed_positions(tokens)
        x = net.emb_layer_norm_before(x)
        x = x * (~padding).unsqueeze(-1).type_as(x)
        # SDPA boolean mask: True = may attend. Official scoring (mask_pads=False) attends to pads too.
        attn_mask = (~padding)[:, None, None, :] if mask_pads and bool(padding.any()) else None
        for i, layer in enumerate(net.layers):
            if packed is None:
                x = self._block(layer, x, attn_mask)
            else:
                x = self._packed_block(layer, packed[i], x, attn_mask)
        return net.emb_layer_norm_after(x)

    def frozen_embed(self, dtype: torch.dtype):
        """:meth:`embed` on weights prepared once (see :meth:`MaskedLM.frozen_embed`). For bf16: every
        trunk matmul weight cast once, and each LayerNorm output cast once where autocast casts it for
        each matmul that reads it (q, k and v), so the output is bit for bit that of ``embed`` under bf16
        autocast (same matmuls, same shapes, same inputs). q/k/v are not fused into one matmul: oneDNN
        picks another reduction order for some shapes, and the numbers would change. For fp32 there is
        nothing to prepare: ``embed`` itself."""
        if next(self.parameters()).dtype != torch.float32 or dtype != torch.bfloat16:
            return self.embed  # fp32, or a model cast as a whole (float64 in tests, bf16)
        packed = [_Packed.of(layer, dtype) for layer in self.net.layers]

        def run(tokens: torch.Tensor, *, mask_pads: bool = True) -> torch.Tensor:
            with torch.no_grad():
                return self._trunk(tokens, mask_pads, packed)

        return run

    def _packed_block(self, layer: nn.Module, w: _Packed, x: torch.Tensor, attn_mask: torch.Tensor | None):
        # _block's maths with the weights of _Packed, each activation cast to bf16 once
        b, n, h = x.shape
        y = layer.self_attn_layer_norm(x).to(w.dtype)
        q, k, v = (F.linear(y, *p).view(b, n, self.n_heads, -1).transpose(1, 2) for p in (w.q, w.k, w.v))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + F.linear(o.transpose(1, 2).reshape(b, n, h), *w.out)
        y = layer.final_layer_norm(x).to(w.dtype)
        return x + F.linear(F.gelu(F.linear(y, *w.fc1)), *w.fc2)

    def embed_with_attention(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        if tokens.shape[1] > self.max_tokens:
            raise ValueError(f"input of {tokens.shape[1]} tokens exceeds the model's {self.max_tokens}")
        padding = tokens.eq(self.tokens.pad_idx)
        x = net.embed_scale * net.embed_tokens(tokens) + net.embed_positions(tokens)
        x = net.emb_layer_norm_before(x)
        x = x * (~padding).unsqueeze(-1).type_as(x)
        attn_mask = (~padding)[:, None, None, :] if bool(padding.any()) else None
        maps = []
        for layer in net.layers:
            x, w = self._block(layer, x, attn_mask, need_weights=True)
            maps.append(w)
        return net.emb_layer_norm_after(x), torch.stack(maps, 1)

    def _block(
        self, layer: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None, need_weights: bool = False
    ):
        # Same maths as esm.modules.TransformerLayer (pre-LN, exact GELU), batch-first and through
        # scaled_dot_product_attention so GPUs get fused attention kernels. need_weights: the attention
        # probabilities are computed explicitly and returned with the output ([B, heads, L, L]).
        attn = layer.self_attn
        b, n, h = x.shape
        y = layer.self_attn_layer_norm(x)
        q = attn.q_proj(y).view(b, n, self.n_heads, -1).transpose(1, 2)
        k = attn.k_proj(y).view(b, n, self.n_heads, -1).transpose(1, 2)
        v = attn.v_proj(y).view(b, n, self.n_heads, -1).transpose(1, 2)
        if need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            w = scores.softmax(-1)
            o = w @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + attn.out_proj(o.transpose(1, 2).reshape(b, n, h))
        y = layer.final_layer_norm(x)
        x = x + layer.fc2(F.gelu(layer.fc1(y)))
        return (x, w) if need_weights else x

    @property
    def head_dense(self) -> nn.Linear:
        return self.net.lm_head.dense

    def head_after_dense(self, y: torch.Tensor) -> torch.Tensor:
        head = self.net.lm_head
        return F.linear(head.layer_norm(F.gelu(y)), head.weight) + head.bias

    @property
    def last_block(self) -> nn.Module:
        return self.net.layers[-1]

    def arch(self) -> dict:
        a = self.net.args
        return {
            "layers": a.layers,
            "hidden": a.embed_dim,
            "heads": a.attention_heads,
            "ffn": a.ffn_embed_dim,
            "max_tokens": a.max_positions,
        }


# -- official checkpoint ------------------------------------------------------------------------------
def _strip_prefix(key: str) -> str:
    """Official loader's rule: drop everything up to the last 'sentence_encoder.' or 'encoder.'."""
    for marker in ("sentence_encoder.", "encoder."):
        if marker in key:
            key = key.rsplit(marker, 1)[1]
    return key


def official_arch(path: os.PathLike | str, data: Mapping) -> dict:
    """Architecture of an official checkpoint: from ``args``, checked against the tensor shapes."""
    state = data["model"]
    args = data.get("args")
    a = vars(args) if isinstance(args, Namespace) else {}

    def arg(name, default=None):
        return a.get(f"encoder_{name}", a.get(name, default))

    if a.get("arch", "roberta_large") != "roberta_large":
        raise InputError(
            path, f"unsupported RNA-FM architecture {a.get('arch')!r} (expected 'roberta_large')"
        )
    emb = state.get("embed_tokens.weight")
    if emb is None:
        raise InputError(
            path, "not an RNA-FM checkpoint: no token embedding ('encoder.encoder.embed_tokens.weight')"
        )
    if emb.shape[0] != len(RNA_FM_TOKENS):
        raise InputError(
            path,
            f"token embedding has {emb.shape[0]} rows; RNA-FM's RNA alphabet has {len(RNA_FM_TOKENS)} "
            "(a CDS/codon or protein checkpoint?)",
        )
    hidden = int(emb.shape[1])
    layer_ids = {int(k.split(".")[1]) for k in state if k.startswith("layers.")}
    layers = max(layer_ids) + 1 if layer_ids else 0
    if len(layer_ids) != layers:
        missing = min(set(range(layers)) - layer_ids)
        raise InputError(path, f"checkpoint has weights of layer {layers - 1} but none of layer {missing}")
    fc1 = state.get("layers.0.fc1.weight")
    ffn = int(fc1.shape[0]) if fc1 is not None else arg("ffn_embed_dim", 4 * hidden)
    pos = state.get("embed_positions.weight")
    max_tokens = int(pos.shape[0]) - 2 if pos is not None else arg("max_positions", 1024)  # padding_idx 1 + 1
    heads = arg("attention_heads")
    if heads is None:
        heads = max(1, hidden // 32)  # the official 640-wide model has 20 heads of 32
    for name, value in (("layers", layers), ("embed_dim", hidden), ("ffn_embed_dim", ffn)):
        declared = arg(name)
        if declared is not None and int(declared) != value:
            raise InputError(path, f"args.encoder_{name}={declared} but the weights have {value}")
    return {"layers": layers, "hidden": hidden, "heads": int(heads), "ffn": ffn, "max_tokens": max_tokens}


def is_official(data) -> bool:
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("model"), Mapping)
        and ("args" in data or "cfg" in data)
    )


def load_official(path: os.PathLike | str, data: Mapping | None = None) -> RnaFM:
    """Build an :class:`RnaFM` from an official ``RNA-FM_pretrained.pth`` (see module doc)."""
    path = Path(path)
    if data is None:
        data = safe_load(path, opaque=True)
    if not is_official(data):
        raise InputError(path, "not an official RNA-FM checkpoint (expected top-level 'args' and 'model')")
    state: dict[str, torch.Tensor] = {}
    for key, value in data["model"].items():
        short = _strip_prefix(key)
        if short in state:
            raise InputError(path, f"two weights map to {short!r} after removing the fairseq prefix")
        state[short] = value
    arch = official_arch(path, {**data, "model": state})
    for key in CONTACT_KEYS:  # contact regression is not part of our model
        state.pop(key, None)
    state = {f"net.{k}": v for k, v in state.items()}
    # The projection is tied to the embedding (one tensor, loaded after it); some exports drop its key.
    state.setdefault("net.lm_head.weight", state["net.embed_tokens.weight"])
    with torch.device("meta"):  # shapes first: a stray 'layers.99999.' key must not allocate 10^5 layers
        check_state_dict(path, state, RnaFM(**arch).state_dict())
    model = RnaFM(**arch)
    with torch.no_grad():  # as the official loader ("for token drop"): in place, in the checkpoint's dict.
        # A checkpoint saved tied shares one storage for both keys, so the zero reaches lm_head.weight too;
        # one that stores an untied copy overwrites the embedding with it, <mask> row and all.
        state["net.embed_tokens.weight"][model.tokens.mask_idx] = 0
    load_checked(model, path, state)
    return model


def official_state_dict(model: RnaFM) -> dict[str, torch.Tensor]:
    """The model's weights under the official key names (``encoder.encoder.*``), e.g. for test fixtures."""
    return {f"encoder.encoder.{k[len('net.') :]}": v for k, v in model.state_dict().items()}
