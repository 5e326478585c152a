"""Self-influence scoring: per-sequence losses, per-sample gradients of one parameter block, the
diagonal empirical Fisher over D_sub (map-reduce) and the score s(z) = sum_j g_j(z)^2 / (F_j + eps).

Modules: ``settings`` (what defines the loss), ``masking`` (deterministic MLM masks), ``losses`` (rows,
batches and per-token loss weights), ``grads`` (per-sample gradients), ``fisher`` and ``score`` (the two
passes), ``fisher_cli`` / ``score_cli`` (the CLI steps).
"""
