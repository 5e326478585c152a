"""Coreset selection: Top-I, CCI, random baselines (any size multiplier), cluster-balanced random and
highest loss, at a pruning rate or an absolute count. See DESIGN.md section 2, items 4-6."""
