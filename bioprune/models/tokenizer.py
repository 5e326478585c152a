"""Character-level tokenisers for the model vocabularies (RNA-FM, ESM-C).

Both vocabularies map one residue character to one token. Encoding is a single ``bytes.translate``
through a 256-entry lookup table, so tokenising a pool costs about as much as reading it.

What a sequence may contain: every single-character token of the vocabulary, upper or lower case;
RNA additionally turns T into U first (in RNA-FM's vocabulary T would be ``<unk>``). Anything else
is an error naming the character and its 1-based position: a residue outside the model's alphabet is
never silently mapped to ``<unk>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

_INVALID = 255


class CharTokenizer:
    def __init__(self, name: str, vocab: Sequence[str], translate: Mapping[str, str] | None = None):
        if len(vocab) >= _INVALID:
            raise ValueError("a character tokeniser needs fewer than 255 tokens")
        self.name = name
        self.vocab = list(vocab)
        self.index = {tok: i for i, tok in enumerate(self.vocab)}
        table = bytearray([_INVALID]) * 256
        for tok, i in self.index.items():
            if len(tok) == 1:
                for ch in {tok, tok.lower()}:
                    table[ord(ch)] = i
        for src, dst in (translate or {}).items():
            for ch in {src, src.lower()}:
                table[ord(ch)] = self.index[dst]
        self._table = bytes(table)
        self.accepted = "".join(t for t in self.vocab if len(t) == 1) + "".join(translate or {})

    def encode_residues(self, seq: bytes | str) -> np.ndarray:
        """Token ids (uint8) of the residues only, without <cls>/<eos>. ValueError on a bad character."""
        if isinstance(seq, str):
            try:
                seq = seq.encode("ascii")
            except UnicodeEncodeError as exc:
                ch = exc.object[exc.start]
                raise ValueError(self._bad(ch, exc.start)) from None
        out = seq.translate(self._table)
        bad = out.find(_INVALID)
        if bad >= 0:
            raise ValueError(self._bad(chr(seq[bad]), bad))
        return np.frombuffer(out, dtype=np.uint8)

    def _bad(self, ch: str, pos: int) -> str:
        return (
            f"character {ch!r} at position {pos + 1} is not in the {self.name} alphabet "
            f"(accepted: {self.accepted}, either case)"
        )

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)
