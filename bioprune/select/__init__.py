"""Coreset selection: Top-I, CCI, random baselines (any size multiplier), cluster-balanced random and
highest loss, at a pruning rate or an absolute count. See docs/selection.md."""
