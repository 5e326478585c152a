"""Downstream evaluation of the pretrained models (docs/evaluation.md); the pretraining stage itself is
:mod:`bioprune.pretrain`.

- :mod:`bioprune.evaluate.tasks`: downstream tasks defined in config, and their data loaders;
- :mod:`bioprune.evaluate.embed`: frozen embeddings (batched, no gradient);
- :mod:`bioprune.evaluate.probes`: small seeded heads trained on frozen embeddings;
- :mod:`bioprune.evaluate.structure_heads`: rna_ss heads with 2-D context (attention-map regression, CNN)
  over the pair features of :mod:`bioprune.evaluate.pairfeatures`, canonical decoding;
- :mod:`bioprune.evaluate.floors`: ``bioprune floor``, each task's score without a language model;
- :mod:`bioprune.evaluate.metrics`: base-pair F1/precision/recall/MCC, accuracy, macro-F1, Spearman;
- :mod:`bioprune.evaluate.perplexity`: held-out MLM perplexity with deterministic masks;
- :mod:`bioprune.evaluate.evaluate_cli`: ``bioprune evaluate`` and ``bioprune perplexity-set``.
"""
