"""Copy the figures of a finished example run into docs/figures/ for the docs, small enough to commit.

    python scripts/docs_figures.py [RESULTS]     # RESULTS: the run's results folder (default results/)

Each PNG is re-encoded with a 256-colour palette: the pixels stay as drawn (readable), the file shrinks
about fourfold. The figures are the default example's (``snakemake --cores 2``, config/config.yaml).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "figures"
# docs name -> path under the results folder
FIGURES = {
    "heldout_family_perplexity.png": "report/figures/heldout_family_perplexity.png",
    "seen_family_perplexity.png": "report/figures/seen_family_perplexity.png",
    "trna_ss.png": "report/figures/trna_ss.png",
    "trna_isotype.png": "report/figures/trna_isotype.png",
    "influence_histogram.png": "report/influence_histogram.png",
    "diagnostics_topi.png": "select/topi/rate0.99/seed0/diagnostics.png",
    "diagnostics_cci.png": "select/cci/rate0.99/seed0/diagnostics.png",
    "coverage.png": "select/report/coverage.png",
}


def main(results: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rel in FIGURES.items():
        image = Image.open(results / rel).convert("RGB")
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(OUT / name, optimize=True)
        print(f"{OUT / name}: {(OUT / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results")
