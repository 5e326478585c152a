"""ESM-C backend on transformers' ``EsmcForMaskedLM`` (built offline from an ``EsmcConfig``).

Architecture: token embedding (64 rows; the 33-token vocabulary padded), pre-LayerNorm blocks with
rotary positions, QK-LayerNorm, SwiGLU feed-forward and residual scaling sqrt(layers / 36), a final
LayerNorm, and an MLM head dense -> GELU -> LayerNorm -> decoder (not tied). ``head_dense`` is
``lm_head.dense``. Pads are excluded from attention through the 2-D ``attention_mask`` that
transformers expands itself; ``mask_pads=False`` passes no mask.

Tokenisation uses the ESM-C vocabulary shipped with transformers (``<cls>`` 0, ``<pad>`` 1, ``<eos>`` 2,
``<unk>`` 3, residues ``LAGVSERTIDPKQNFYMHWCXBUZO`` 4-28, ``.`` ``-`` ``|`` 29-31, ``<mask>`` 32).

Official weights
----------------
:func:`load_hf_dir` reads a local transformers model folder (``config.json`` with
``"model_type": "esmc"`` plus ``model.safetensors``, sharded safetensors with an index, or
``pytorch_model.bin``). To get the official ESM-C weights into that form, on any machine with
internet access::

    pip install -U huggingface_hub
    hf download biohub/ESMC-300M-hf --local-dir esmc-300m      # or biohub/ESMC-600M-hf

(equivalently, in Python: ``EsmcForMaskedLM.from_pretrained("biohub/ESMC-300M-hf")
.save_pretrained("esmc-300m")``), copy the folder next to the workflow and set
``model.checkpoint: esmc-300m`` in the config. Use the ``-hf`` repositories: they hold weights in the
transformers-native layout; the plain ``biohub/ESMC-300M`` ones need ``trust_remote_code``. The
weights are released under EvolutionaryScale's/Biohub's own licence terms; read them before use.
:func:`export_hf` writes a model trained here back to such a folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import EsmcConfig, EsmcForMaskedLM
from transformers.models.esmc.tokenization_esmc import SEQUENCE_VOCAB

from bioprune.errors import InputError
from bioprune.models.base import MaskedLM
from bioprune.models.checkpoint import check_state_dict, load_checked, safe_load
from bioprune.models.tokenizer import CharTokenizer

VOCAB_SIZE = 64  # released checkpoints pad the 33 tokens to 64 rows
# BERT "random token" substitutions draw from the 20 standard amino acids only.
RANDOM_RESIDUES = "LAGVSERTIDPKQNFYMHWC"


def swiglu_hidden(hidden: int, ratio: float = 8 / 3) -> int:
    """ESM-C's feed-forward width: ratio x hidden rounded up to a multiple of 256 (960 -> 2560)."""
    return int((ratio * hidden + 255) // 256 * 256)


def make_config(layers: int, hidden: int, heads: int, ffn: int, max_tokens: int) -> EsmcConfig:
    return EsmcConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=max_tokens,
        pad_token_id=SEQUENCE_VOCAB.index("<pad>"),
        bos_token_id=SEQUENCE_VOCAB.index("<cls>"),
        eos_token_id=SEQUENCE_VOCAB.index("<eos>"),
        mask_token_id=SEQUENCE_VOCAB.index("<mask>"),
    )


class Esmc(MaskedLM):
    alphabet = "protein"

    def __init__(
        self,
        layers: int,
        hidden: int,
        heads: int,
        ffn: int,
        max_tokens: int = 2048,
        *,
        config: EsmcConfig | None = None,
    ):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.hf = EsmcForMaskedLM(config or make_config(layers, hidden, heads, ffn, max_tokens))
        self.max_tokens = max_tokens
        tokenizer = CharTokenizer("ESM-C", SEQUENCE_VOCAB)
        self._set_tokenizer(tokenizer, RANDOM_RESIDUES, self.hf.config.vocab_size)

    def embed(self, tokens: torch.Tensor, *, mask_pads: bool = True) -> torch.Tensor:
        if tokens.shape[1] > self.max_tokens:
            raise ValueError(f"input of {tokens.shape[1]} tokens exceeds the model's {self.max_tokens}")
        mask = tokens.ne(self.tokens.pad_idx).long() if mask_pads else None
        return self.hf.esmc(input_ids=tokens, attention_mask=mask).last_hidden_state

    def embed_with_attention(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.shape[1] > self.max_tokens:
            raise ValueError(f"input of {tokens.shape[1]} tokens exceeds the model's {self.max_tokens}")
        mask = tokens.ne(self.tokens.pad_idx).long()
        config = self.hf.config
        impl = config._attn_implementation
        config._attn_implementation = "eager"  # SDPA kernels do not return the probabilities
        try:
            out = self.hf.esmc(input_ids=tokens, attention_mask=mask, output_attentions=True)
        finally:
            config._attn_implementation = impl
        return out.last_hidden_state, torch.stack(out.attentions, 1)

    @property
    def head_dense(self) -> nn.Linear:
        return self.hf.lm_head.dense

    def head_after_dense(self, y: torch.Tensor) -> torch.Tensor:
        head = self.hf.lm_head
        return head.decoder(head.layer_norm(F.gelu(y)))

    @property
    def last_block(self) -> nn.Module:
        return self.hf.esmc.layers[-1]

    def arch(self) -> dict:
        c = self.hf.config
        return {
            "layers": c.num_hidden_layers,
            "hidden": c.hidden_size,
            "heads": c.num_attention_heads,
            "ffn": c.intermediate_size,
            "max_tokens": self.max_tokens,
        }


# -- transformers model folders ----------------------------------------------------------------------
def is_hf_dir(path: os.PathLike | str) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def _read_hf_weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    legacy = folder / "pytorch_model.bin"
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as exc:
            raise InputError(index, f"not a safetensors index ({exc})") from exc
        files = [folder / name for name in sorted(set(weight_map.values()))]
    elif legacy.is_file():
        data = safe_load(legacy)
        if not isinstance(data, dict):
            raise InputError(legacy, "expected a state dict")
        return data, legacy
    else:
        raise InputError(folder, "no weights found (model.safetensors, its index, or pytorch_model.bin)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f), device="cpu"))
        except (SafetensorError, OSError) as exc:
            raise InputError(f, f"corrupt or unreadable safetensors file ({exc})") from exc
    return state, files[0] if len(files) == 1 else index


def load_hf_dir(path: os.PathLike | str) -> Esmc:
    """An :class:`Esmc` from a local transformers ESM-C folder (see module doc for getting one)."""
    folder = Path(path)
    cfg_path = folder / "config.json"
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(cfg_path, f"unreadable model config ({exc})") from exc
    if raw.get("model_type") != "esmc":
        raise InputError(cfg_path, f"model_type is {raw.get('model_type')!r}, expected 'esmc'")
    try:
        config = EsmcConfig.from_pretrained(str(folder))
    except Exception as exc:  # transformers raises assorted types for bad configs
        raise InputError(cfg_path, f"invalid ESM-C config ({' '.join(str(exc).split())})") from exc
    if config.vocab_size <= SEQUENCE_VOCAB.index("<mask>") or config.pad_token_id != 1:
        raise InputError(cfg_path, "vocabulary does not match the ESM-C tokeniser (vocab_size/pad_token_id)")
    shape = (
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.intermediate_size,
        config.max_position_embeddings,
    )
    state, source = _read_hf_weights(folder)
    # Non-persistent rotary buffers are never saved; anything else must match exactly.
    state = {f"hf.{k}": v for k, v in state.items() if not k.endswith("inv_freq")}
    # The config is compared with the weights on the meta device first: a config claiming a huge model
    # must not allocate it (see registry._load_own).
    try:
        with torch.device("meta"):
            shapes = Esmc(*shape, config=config).state_dict()
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InputError(cfg_path, f"invalid ESM-C config ({' '.join(str(exc).split())})") from exc
    check_state_dict(source, state, shapes)
    model = Esmc(*shape, config=config)
    load_checked(model, source, state)
    return model


def export_hf(model: Esmc, folder: os.PathLike | str) -> None:
    """Write ``model`` as a transformers folder (config, safetensors weights, tokenizer files)."""
    from transformers import EsmcTokenizer

    model.hf.save_pretrained(str(folder))
    EsmcTokenizer().save_pretrained(str(folder))
