"""The pool stage: the steps that build the sequence pool every later stage reads.

Steps (each a ``bioprune <step>`` subcommand): :mod:`~bioprune.pool.ingest`, :mod:`~bioprune.pool.dedup`,
:mod:`~bioprune.pool.decontaminate`, :mod:`~bioprune.pool.cluster`, :mod:`~bioprune.pool.holdout` and
:mod:`~bioprune.pool.shard`; :mod:`~bioprune.pool.mmseqs` runs MMseqs2 for decontaminate and cluster.

:mod:`bioprune.pool.io` reads and writes a pool folder for every step. Nothing is imported here, so
``bioprune --help`` can list a step whose own imports an environment lacks (tests/test_envs.py).
"""
