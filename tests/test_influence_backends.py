"""Per-sample gradients and scores on the real backends (RNA-FM on fair-esm, ESM-C on transformers),
tiny random-init models in float64, against one-sequence brute-force backward passes."""

from __future__ import annotations

import pytest
import torch  # noqa: F401
from test_influence import BLOCKS, MODES, brute_grads, engine_grads, random_seqs, rel_err, settings

from bioprune.models.registry import build_model

ALPHABETS = {"rnafm": "ACGU", "esmc": "ACDEFGHIKLMNPQRSTVWY"}


@pytest.fixture(scope="module", params=["rnafm", "esmc"])
def backend(request):
    model = build_model(request.param, "tiny", layers=2, hidden=32, heads=4, ffn=64, seed=0)
    return request.param, model.double().eval()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("block", BLOCKS)
def test_backend_gradients_equal_brute_force(backend, mode, block):
    name, model = backend
    seqs = random_seqs(6, 3, 45, seed=11, letters=ALPHABETS[name])
    s = settings(mode, block, grad_memory_mb=1)
    _, got = engine_grads(model, seqs, s)
    for sid, (loss, g) in brute_grads(model, seqs, s).items():
        assert got[sid][0] == pytest.approx(loss, rel=1e-10)
        assert rel_err(got[sid][1], g) < 1e-4


def test_backend_float32_close_to_float64(backend):
    name, model64 = backend
    model32 = build_model(name, "tiny", layers=2, hidden=32, heads=4, ffn=64, seed=0).eval()
    seqs = random_seqs(5, 10, 40, seed=12, letters=ALPHABETS[name])
    s = settings("mlm", "head_dense")
    _, a = engine_grads(model64, seqs, s)
    _, b = engine_grads(model32, seqs, s)
    for sid in a:
        assert rel_err(b[sid][1].double(), a[sid][1]) < 1e-3


def test_backend_last_block_covers_every_block_parameter(backend):
    name, model = backend
    seqs = random_seqs(2, 5, 9, letters=ALPHABETS[name])
    engine, _ = engine_grads(model, seqs, settings("mlm", "last_block"))
    names = [f"last_block.{k}" for k, _ in model.last_block.named_parameters()]
    assert list(engine.param_shapes) == names
    assert engine.n_params == sum(p.numel() for p in model.last_block.parameters())
    if name == "esmc":  # transformers calls its layers as modules: the hooked + vmap path is used
        assert engine._impl.hooked
