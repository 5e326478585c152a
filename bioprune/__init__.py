"""bioprune: influence-based data pruning for biological foundation models."""

__version__ = "0.1.0"
