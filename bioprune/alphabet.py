"""Residue alphabets: what ingestion accepts and what the tokenisers map. One place for both.

RNA follows RNA-FM's 25-token vocabulary: ``<cls> <pad> <eos> <unk>`` (0-3), then
``A C G U R Y K M S W B D H V N -`` (4-19), ``<null_1..4>`` (20-23) and ``<mask>`` (24).
Protein follows ESM (fair-esm ESM-1b / ESM-C): the 20 standard amino acids plus X B U Z O.
"""

from __future__ import annotations

from dataclasses import dataclass

RNA_RESIDUES = "ACGURYKMSWBDHVN"  # IUPAC nucleotide codes with U for T
PROTEIN_RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO"  # ESM order; X B U Z O are ambiguity/rare codes
# The standard residues of each alphabet: a uniform guess over them has perplexity len(...), the
# reference a masked language model's perplexity is read against (the report prints it).
STANDARD_RESIDUES = {"rna": "ACGU", "protein": "ACDEFGHIKLMNPQRSTVWY"}
# The alphabet of each model backend (here, not in models.registry, so that reading it needs no torch).
BACKEND_ALPHABET = {"rnafm": "rna", "esmc": "protein"}

# Alignment gap characters and whitespace are removed at ingestion (they are not residues).
GAP_CHARS = b"-.~_*"
WHITESPACE = b" \t\r\n\v\f"

# RNA-FM's vocabulary, index = token id.
RNA_FM_TOKENS = (
    ["<cls>", "<pad>", "<eos>", "<unk>"]
    + list("ACGURYKMSWBDHVN-")
    + ["<null_1>", "<null_2>", "<null_3>", "<null_4>", "<mask>"]
)


@dataclass(frozen=True)
class Alphabet:
    name: str
    residues: str
    # bytes.translate table applied after upper-casing: RNA maps T -> U.
    translate_from: bytes = b""
    translate_to: bytes = b""

    @property
    def residue_bytes(self) -> bytes:
        return self.residues.encode()


ALPHABETS = {
    "rna": Alphabet("rna", RNA_RESIDUES, b"T", b"U"),
    "protein": Alphabet("protein", PROTEIN_RESIDUES),
}


def get_alphabet(name: str) -> Alphabet:
    try:
        return ALPHABETS[name]
    except KeyError:
        raise ValueError(f"unknown alphabet {name!r}; choose one of {sorted(ALPHABETS)}") from None
