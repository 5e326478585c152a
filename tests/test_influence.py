"""Influence scoring against brute force: per-sample gradients, Fisher and scores equal a loop of
one-sequence backward passes through the plain model forward, for both loss modes and both blocks;
scores do not depend on batch size, order or sharding; the map-reduce Fisher equals a single pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_influence_toy import toy_model

from bioprune.errors import ConfigError, InputError
from bioprune.fasta import FastaWriter, Record
from bioprune.influence.fisher import Fisher, compute_partial, reduce_fisher, save_fisher
from bioprune.influence.grads import GradientEngine
from bioprune.influence.losses import make_batches, prepare
from bioprune.influence.score import inverse_fisher, score_records
from bioprune.influence.settings import InfluenceSettings
from bioprune.models.masking import draw_mask

CPU = torch.device("cpu")
MODES = ["mlm", "compat"]
# (loss_mode, loss_norm): every mlm normalisation, and compat (which has its own fixed normaliser)
VARIANTS = [("mlm", "mean"), ("mlm", "token_sum"), ("mlm", "sqrt"), ("mlm", "window"), ("compat", "mean")]
BLOCKS = ["head_dense", "last_block"]


def random_seqs(n: int, lo: int, hi: int, seed: int = 0, letters: str = "ACGU") -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(f"seq{i}", "".join(rng.choice(list(letters), int(rng.integers(lo, hi))))) for i in range(n)]


def block_params(model, block: str) -> list[torch.Tensor]:
    return [model.head_dense.weight] if block == "head_dense" else list(model.last_block.parameters())


def brute_loss(model, seq_id: str, seq: str, s: InfluenceSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-sequence loss built directly from the definitions (one sequence, plain forward), and the
    mean cross-entropy over its loss tokens (what the score table reports as ``loss``)."""
    spec = model.tokens
    cap = s.max_length - 2
    if len(seq) > cap and s.long_sequences == "windows":
        k = -(-len(seq) // cap)
        pieces = [seq[i * len(seq) // k : (i + 1) * len(seq) // k] for i in range(k)]
    else:
        pieces = [seq[:cap]]
    if s.loss_mode == "compat":
        total = 0.0
        for piece in pieces:
            # official truncation: tokenise the whole sequence, keep the first max_length tokens
            ids = model.encode(piece) if len(pieces) > 1 else model.encode(seq)[: s.max_length]
            toks = torch.full((1, s.max_length), spec.pad_idx)
            toks[0, : len(ids)] = torch.tensor(ids)
            logits = model(toks, mask_pads=False)[0]
            total = total + F.cross_entropy(logits, toks[0], reduction="sum")
        mean = total / (s.max_length * len(pieces))
        return mean, mean
    residues = np.concatenate([np.array(model.encode(p)[1:-1]) for p in pieces])
    draw = draw_mask(
        seq_id,
        residues,
        seed=s.mask_seed,
        prob=s.mask_prob,
        mask_idx=spec.mask_idx,
        residue_ids=spec.residue_ids,
    )
    total, offset = 0.0, 0
    for piece in pieces:
        ids = torch.tensor(model.encode(piece))
        sel = draw.positions[(draw.positions >= offset) & (draw.positions < offset + len(piece))]
        rep = draw.replacement[np.isin(draw.positions, sel)]
        inp = ids.clone()
        inp[torch.from_numpy(sel - offset + 1)] = torch.from_numpy(rep)
        logits = model(inp[None])[0]
        pos = torch.from_numpy(sel - offset + 1)
        total = total + F.cross_entropy(logits[pos], ids[pos], reduction="sum")
        offset += len(piece)
    n = len(draw.positions)
    weight = {"mean": 1 / n, "token_sum": 1.0, "sqrt": n**-0.5, "window": 1 / s.max_length}[s.loss_norm]
    return total * weight, total / n


def brute_grads(model, seqs, s: InfluenceSettings):
    params = block_params(model, s.block)
    out = {}
    for sid, seq in seqs:
        loss, mean = brute_loss(model, sid, seq, s)
        gs = torch.autograd.grad(loss, params)
        out[sid] = (mean.item(), torch.cat([g.reshape(-1) for g in gs]))
    return out


def engine_grads(model, seqs, s: InfluenceSettings):
    engine = GradientEngine(model, s, CPU)
    items = [prepare(model, i, sid, seq, s) for i, (sid, seq) in enumerate(seqs)]
    out = {}
    for batch in make_batches(items, model.tokens.pad_idx, s.batch_tokens):
        bg = engine.batch_grads(batch)
        for idx, g in bg.chunks:
            for j, row in zip(idx.tolist(), g, strict=True):
                it = batch.items[j]  # the engine's loss is weighted: report the mean per loss token
                out[it.seq_id] = (bg.losses[j].item() / (it.weight * it.n_tokens), row.clone())
    return engine, out


def records(seqs) -> list[Record]:
    return [Record(sid, "", seq.encode(), i + 1) for i, (sid, seq) in enumerate(seqs)]


def scores_of(model, seqs, s: InfluenceSettings, fisher: Fisher) -> dict[str, tuple[float, float]]:
    engine = GradientEngine(model, s, CPU)
    inv = inverse_fisher(fisher, s.eps, engine)
    out = {}
    for rb in score_records(model, engine, inv, records(seqs), "mem", s, progress=False):
        d = rb.to_pydict()
        out.update({i: (v, loss) for i, v, loss in zip(d["id"], d["self_influence"], d["loss"], strict=True)})
    return out


def write_fasta(path, seqs):
    with FastaWriter(path) as w:
        for sid, seq in seqs:
            w.write(sid, seq.encode())
    return path


def settings(mode: str, block: str, **kw) -> InfluenceSettings:
    base = dict(block=block, loss_mode=mode, max_length=24, long_sequences="windows", batch_tokens=160)
    base.update(kw)
    return InfluenceSettings(**base)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("mode,norm", VARIANTS)
@pytest.mark.parametrize("block", BLOCKS)
def test_per_sample_gradients_equal_brute_force(mode, norm, block):
    model = toy_model()
    # lengths 3..50 with max_length 24: short rows, several windows, bucketing into several batches
    seqs = random_seqs(10, 3, 50)
    s = settings(mode, block, grad_memory_mb=1, loss_norm=norm)
    _, got = engine_grads(model, seqs, s)
    want = brute_grads(model, seqs, s)
    for sid, (loss, g) in want.items():
        assert got[sid][0] == pytest.approx(loss, rel=1e-10)
        assert rel_err(got[sid][1], g) < 1e-10


@pytest.mark.parametrize("extra", [0, 1, 2, 9])
def test_compat_truncation_is_the_official_tokenise_then_cut(extra):
    """Up to max_length - 2 residues a row ends in <eos>; from max_length - 1 on, the official code's row
    is its first max_length tokens: <cls> and max_length - 1 residues, no <eos>."""
    model = toy_model()
    s = settings("compat", "head_dense", long_sequences="truncate")
    n = s.max_length - 2 + extra
    seq = random_seqs(1, n, n + 1, seed=extra)[0]
    item = prepare(model, 0, *seq, s)
    want = model.encode(seq[1])[: s.max_length]
    assert item.rows[0][: len(want)].tolist() == want
    assert (item.rows[0][-1] == model.tokens.eos_idx) == (extra == 0)
    _, got = engine_grads(model, [seq], s)
    for sid, (loss, g) in brute_grads(model, [seq], s).items():
        assert got[sid][0] == pytest.approx(loss, rel=1e-10)
        assert rel_err(got[sid][1], g) < 1e-10


def test_last_block_row_loop_equals_vmap():
    """The fallback for blocks that vmap cannot batch gives the same gradients."""
    model = toy_model()
    seqs = random_seqs(5, 3, 30, seed=1)
    s = settings("mlm", "last_block")
    engine, vm = engine_grads(model, seqs, s)
    assert engine._impl.hooked and engine._impl.vmap_ok
    engine._impl.vmap_ok = False
    items = [prepare(model, i, sid, seq, s) for i, (sid, seq) in enumerate(seqs)]
    for batch in make_batches(items, model.tokens.pad_idx, s.batch_tokens):
        bg = engine.batch_grads(batch)
        for idx, g in bg.chunks:
            for j, row in zip(idx.tolist(), g, strict=True):
                assert rel_err(row, vm[batch.items[j].seq_id][1]) < 1e-12


def full_fisher(model, seqs, s, model_hash="h") -> Fisher:
    from bioprune.influence.fisher import _split, provenance

    engine, got = engine_grads(model, seqs, s)
    total = sum(g.double().square() for _, g in got.values())
    return Fisher("total", provenance(model_hash, s), len(seqs), _split(total, engine.param_shapes))


@pytest.mark.parametrize("mode,norm", VARIANTS)
@pytest.mark.parametrize("block", BLOCKS)
def test_scores_equal_brute_force(mode, norm, block):
    model = toy_model(seed=1)
    d_sub = random_seqs(8, 5, 40, seed=2)
    pool = random_seqs(6, 5, 40, seed=3)
    s = settings(mode, block, eps=1e-6, loss_norm=norm)
    want_sub = brute_grads(model, d_sub, s)
    fisher_diag = sum(g.square() for _, g in want_sub.values()) / len(d_sub)
    got = scores_of(model, pool, s, full_fisher(model, d_sub, s))
    for sid, (loss, g) in brute_grads(model, pool, s).items():
        s_brute = float((g.square() / (fisher_diag + s.eps)).sum())
        assert got[sid][0] == pytest.approx(s_brute, rel=1e-4)
        assert got[sid][1] == pytest.approx(loss, rel=1e-10)


def test_mean_score_over_d_sub_is_effective_dimension():
    """Over D_sub itself, mean_z s(z) = sum_j F_j / (F_j + eps): a whole-pipeline identity."""
    model = toy_model(seed=2)
    d_sub = random_seqs(12, 5, 40, seed=4)
    s = settings("mlm", "head_dense", eps=1e-9)
    fisher = full_fisher(model, d_sub, s)
    diag = fisher.diagonal()["head_dense.weight"]
    got = scores_of(model, d_sub, s, fisher)
    mean = np.mean([v for v, _ in got.values()])
    assert mean == pytest.approx(float((diag / (diag + s.eps)).sum()), rel=1e-8)
    assert mean < diag.numel()


@pytest.mark.parametrize("block", BLOCKS)
def test_scores_do_not_depend_on_batching_order_or_sharding(block):
    model = toy_model(seed=3)
    seqs = random_seqs(16, 3, 60, seed=5)
    s = settings("mlm", block)
    fisher = full_fisher(model, seqs[:6], s)
    ref = scores_of(model, seqs, s, fisher)
    rng = np.random.default_rng(0)
    shuffled = [seqs[i] for i in rng.permutation(len(seqs))]
    for variant, order in (
        (settings("mlm", block, batch_tokens=24), seqs),  # one sequence per batch
        (settings("mlm", block, batch_tokens=100_000, grad_memory_mb=1), shuffled),  # one batch
    ):
        got = scores_of(model, order, variant, fisher)
        for sid, (v, loss) in ref.items():
            assert got[sid][0] == pytest.approx(v, rel=1e-9)
            assert got[sid][1] == pytest.approx(loss, rel=1e-9)
    # sharded: each half scored alone
    halves = {**scores_of(model, shuffled[:7], s, fisher), **scores_of(model, shuffled[7:], s, fisher)}
    assert halves.keys() == ref.keys()
    for sid, (v, _) in ref.items():
        assert halves[sid][0] == pytest.approx(v, rel=1e-9)


def test_float32_scores_independent_of_batch_size():
    model = toy_model(seed=3, dtype=torch.float32)
    seqs = random_seqs(20, 3, 60, seed=6)
    s = settings("mlm", "head_dense")
    fisher = full_fisher(model, seqs[:8], s)
    a = scores_of(model, seqs, s, fisher)
    b = scores_of(model, seqs, settings("mlm", "head_dense", batch_tokens=30), fisher)
    for sid in a:
        assert b[sid][0] == pytest.approx(a[sid][0], rel=1e-3)


def test_bf16_scores_close_to_fp32():
    model = toy_model(seed=4, dtype=torch.float32)
    seqs = random_seqs(10, 10, 40, seed=7)
    s32 = settings("mlm", "head_dense", precision="fp32")
    s16 = settings("mlm", "head_dense", precision="bf16")
    fisher = full_fisher(model, seqs, s32)
    a, b = scores_of(model, seqs, s32, fisher), scores_of(model, seqs, s16, fisher)
    ratios = np.array([b[k][0] / a[k][0] for k in a])
    assert np.all(np.abs(ratios - 1) < 0.1), ratios
    assert np.any(ratios != 1.0)  # the bf16 path really ran


def test_truncate_rule_scores_only_the_first_window():
    model = toy_model()
    s = settings("mlm", "head_dense", long_sequences="truncate")
    seq = random_seqs(1, 60, 61, seed=8)[0][1]
    item = prepare(model, 0, "x", seq, s)
    assert item.truncated and item.n_windows == 1 and len(item.rows[0]) == s.max_length
    short = prepare(model, 0, "x", seq[: s.max_length - 2], s)
    assert np.array_equal(item.rows[0], short.rows[0])  # same id, same residues -> same mask
    windows = prepare(model, 0, "x", seq, settings("mlm", "head_dense"))
    assert windows.n_windows == 3 and not windows.truncated
    assert sum(len(r) - 2 for r in windows.rows) == len(seq)


def write_shards(tmp_path, seqs, n_shards):
    paths = []
    for k in range(n_shards):
        paths.append(write_fasta(tmp_path / f"shard_{k:03d}.fasta", seqs[k::n_shards]))
    return paths


def test_map_reduce_fisher_equals_single_pass(tmp_path):
    model = toy_model(seed=5, dtype=torch.float32)
    seqs = random_seqs(40, 5, 50, seed=9)
    d_sub = [sid for sid, _ in seqs[::3]]
    ids = tmp_path / "dsub.txt"
    ids.write_text("\n".join(d_sub) + "\n")
    s = settings("mlm", "head_dense")
    (tmp_path / "one").mkdir()
    (one,) = write_shards(tmp_path / "one", seqs, 1)
    single = compute_partial(model, "h", one, ids, s, progress=False)
    (tmp_path / "three").mkdir()
    parts = []
    for k, shard in enumerate(write_shards(tmp_path / "three", seqs, 3)):
        parts.append(
            save_fisher(compute_partial(model, "h", shard, ids, s, progress=False), tmp_path / f"p{k}.pt")
        )
    total = reduce_fisher(parts)
    assert total.n == single.n == len(d_sub)
    assert sorted(total.ids) == sorted(d_sub)
    for k, v in single.sums.items():
        assert v.dtype == torch.float64
        torch.testing.assert_close(total.sums[k], v, rtol=1e-5, atol=0)
    # the Fisher equals the mean of brute-force squared gradients over D_sub
    want = brute_grads(model, [x for x in seqs if x[0] in set(d_sub)], s)
    brute = sum(g.double().square() for _, g in want.values()) / len(d_sub)
    assert rel_err(total.diagonal()["head_dense.weight"].reshape(-1), brute) < 1e-4


def test_fisher_reduce_refuses_mismatches(tmp_path):
    model = toy_model(seed=6, dtype=torch.float32)
    seqs = random_seqs(12, 5, 30, seed=10)
    ids = tmp_path / "dsub.txt"
    ids.write_text("\n".join(sid for sid, _ in seqs[::3]))  # members in both shards
    a, b = write_shards(tmp_path, seqs, 2)
    s = settings("mlm", "head_dense")
    pa = save_fisher(compute_partial(model, "h", a, ids, s, progress=False), tmp_path / "a.pt")
    pb = save_fisher(compute_partial(model, "h", b, ids, s, progress=False), tmp_path / "b.pt")
    other = settings("mlm", "head_dense", mask_seed=1)
    pb2 = save_fisher(compute_partial(model, "h", b, ids, other, progress=False), tmp_path / "b2.pt")
    pb3 = save_fisher(compute_partial(model, "other", b, ids, s, progress=False), tmp_path / "b3.pt")
    assert reduce_fisher([pa, pb]).n == 4
    with pytest.raises(InputError, match="mask_seed"):
        reduce_fisher([pa, pb2])
    with pytest.raises(InputError, match="model_sha256"):
        reduce_fisher([pa, pb3])
    with pytest.raises(InputError, match="in none of the 1 shards"):
        reduce_fisher([pa])
    with pytest.raises(InputError, match="already counted|also counted"):
        reduce_fisher([pa, pb, pa])
    with pytest.raises(InputError, match="reduced Fisher"):
        reduce_fisher([save_fisher(reduce_fisher([pa, pb]), tmp_path / "t.pt"), pb])


def test_fisher_rejects_duplicate_or_missing_ids_file(tmp_path):
    model = toy_model(dtype=torch.float32)
    shard = write_fasta(tmp_path / "s.fasta", random_seqs(4, 5, 10))
    s = settings("mlm", "head_dense")
    dup = tmp_path / "dup.txt"
    dup.write_text("seq0\nseq1\nseq0\n")
    with pytest.raises(InputError, match=r"dup.txt:3.*duplicate id 'seq0'"):
        compute_partial(model, "h", shard, dup, s, progress=False)
    with pytest.raises(InputError, match="no such ids file"):
        compute_partial(model, "h", shard, tmp_path / "nope.txt", s, progress=False)


def test_bad_residue_names_file_and_record(tmp_path):
    model = toy_model(dtype=torch.float32)
    shard = write_fasta(tmp_path / "s.fasta", [("ok", "ACGU"), ("bad", "ACXU")])
    ids = tmp_path / "ids.txt"
    ids.write_text("ok\nbad\n")
    with pytest.raises(InputError, match=r"s.fasta:3 \(record 'bad'\).*'X'"):
        compute_partial(model, "h", shard, ids, settings("mlm", "head_dense"), progress=False)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(block="first_block"), "block"),
        (dict(loss_mode="mse"), "loss_mode"),
        (dict(mask_prob=0.0), "mask_prob"),
        (dict(eps=0.0), "eps"),
        (dict(max_length=2), "max_length"),
        (dict(long_sequences="drop"), "long_sequences"),
    ],
)
def test_settings_validation(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        InfluenceSettings(**kw)


def test_loss_definition_ignores_mask_settings_in_compat():
    a = InfluenceSettings(loss_mode="compat", mask_seed=1).loss_definition()
    b = InfluenceSettings(loss_mode="compat", mask_seed=2).loss_definition()
    assert a == b
    assert (
        InfluenceSettings(mask_seed=1).loss_definition() != InfluenceSettings(mask_seed=2).loss_definition()
    )


def test_heap_trimmer_trims_only_after_growth():
    from bioprune.influence.passes import HeapTrimmer

    trim = HeapTrimmer(slack_mb=1 << 20)  # 1 TiB of slack: never
    trim()
    assert trim.trims == 0
    if trim._trim is None:
        pytest.skip("no glibc malloc_trim here")
    assert trim.rss() > 0
    trim.slack, trim.base = 0, 0  # pretend the process grew
    trim()
    assert trim.trims == 1 and trim.base == pytest.approx(trim.rss(), rel=0.5)
