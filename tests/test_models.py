"""Model backends: tokenisers, the RNA-FM trunk, official checkpoint layouts, the model file format."""

from __future__ import annotations

import argparse
import json
import re

import pytest
import torch
from esm.model.esm1 import ProteinBertModel

from bioprune.alphabet import RNA_FM_TOKENS
from bioprune.errors import ConfigError, InputError
from bioprune.models.checkpoint import Opaque, safe_load
from bioprune.models.registry import (
    SIZES,
    build_from_spec,
    build_model,
    load_model,
    param_count,
    resolve_spec,
    save_model,
)
from bioprune.models.rnafm import official_state_dict, rna_fm_alphabet

TINY = {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64}


def rna(seed=0, **kw):
    return build_model("rnafm", "tiny", seed=seed, **{**TINY, **kw})


def esmc(seed=0, **kw):
    return build_model("esmc", "tiny", seed=seed, **{**TINY, **kw})


# -- tokenisers -----------------------------------------------------------------------------------------
def test_rna_tokeniser_t_to_u_and_lower_case():
    m = rna()
    ids = m.encode("ACGTacgtu")
    idx = {t: i for i, t in enumerate(RNA_FM_TOKENS)}
    assert ids[0] == idx["<cls>"] and ids[-1] == idx["<eos>"]
    assert [RNA_FM_TOKENS[i] for i in ids[1:-1]] == list("ACGUACGUU")
    assert idx["<unk>"] not in ids  # T would be <unk> in RNA-FM's vocabulary without the T->U step


def test_rna_tokeniser_accepts_iupac_and_gap():
    m = rna()
    ids = m.encode("RYKMSWBDHVN-ryn")
    assert [RNA_FM_TOKENS[i] for i in ids[1:-1]] == list("RYKMSWBDHVN-RYN")


@pytest.mark.parametrize(
    ("seq", "char", "pos"),
    [("ACGX", "X", 4), ("acg u", " ", 4), ("E", "E", 1), ("AC*G", "*", 3), ("ACé", "é", 3)],
)
def test_rna_tokeniser_rejects_bad_character_naming_it(seq, char, pos):
    with pytest.raises(ValueError) as err:
        rna().encode(seq)
    msg = str(err.value)
    assert repr(char) in msg and f"position {pos}" in msg


def test_protein_tokeniser():
    m = esmc()
    ids = m.encode("mkLV")
    assert ids[0] == m.tokens.cls_idx and ids[-1] == m.tokens.eos_idx
    assert m.tokenizer.decode(ids[1:-1]) == "MKLV"
    with pytest.raises(ValueError, match="'J' at position 2"):
        m.encode("MJ")


def test_batch_pads_to_longest_only():
    m = rna()
    toks = m.batch(["ACGU", "A"])
    assert toks.shape == (2, 6)
    assert (toks[1, 3:] == m.tokens.pad_idx).all()


# -- RNA-FM trunk -----------------------------------------------------------------------------------------
def test_rnafm_matches_fair_esm_forward():
    """Our reimplemented trunk (SDPA, batch-first) computes what fair-esm's ProteinBertModel does."""
    m = rna().eval()
    ref = ProteinBertModel(m.net.args, rna_fm_alphabet()).eval()
    result = ref.load_state_dict({k[len("net.") :]: v for k, v in m.state_dict().items()}, strict=False)
    assert set(result.missing_keys) == {"contact_head.regression.weight", "contact_head.regression.bias"}
    toks = m.batch(["ACGUNACGUA", "GGC", "UUUUUUUUUUUUU"])
    with torch.no_grad():
        assert torch.allclose(m(toks), ref(toks)["logits"], atol=1e-5)


def test_mask_pads_controls_attention_to_pads():
    for m in (rna().eval(), esmc().eval()):
        alone = m.batch(["ACGUA"])
        padded = m.batch(["ACGUA", "ACGUAGGGGGGGGGG"])
        with torch.no_grad():
            a = m.embed(alone)[0]
            b = m.embed(padded, mask_pads=True)[0, : alone.shape[1]]
            c = m.embed(padded, mask_pads=False)[0, : alone.shape[1]]
        assert torch.allclose(a, b, atol=1e-5), type(m).__name__
        assert not torch.allclose(a, c, atol=1e-3), type(m).__name__


@pytest.mark.parametrize("bf16", [False, True])
def test_frozen_embed_is_embed_bit_for_bit(bf16):
    """RnaFM.frozen_embed (bf16 weights cast once) gives exactly what embed gives under bf16 autocast, pads
    masked or attended to; in fp32, and for ESM-C, it is embed itself."""
    m = rna().eval()
    toks = m.batch(["ACGUNACGUA", "GGC", "UUUUUUUUUUUUU", "ACGUACGUACGUAC"])
    dtype = torch.bfloat16 if bf16 else torch.float32
    frozen = m.frozen_embed(dtype)
    assert (frozen == m.embed) is not bf16
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for mask_pads in (True, False):
            want = m.embed(toks, mask_pads=mask_pads)
            assert torch.equal(frozen(toks, mask_pads=mask_pads), want)
        full = toks[2:3]  # no pads: no attention mask
        assert torch.equal(frozen(full), m.embed(full))
    assert m.double().frozen_embed(torch.float64) == m.embed  # a model cast as a whole keeps embed
    e = esmc().eval()
    assert e.frozen_embed(dtype) == e.embed


def test_esmc_logits_match_transformers_masked_lm():
    """ESM-C's forward pass, which influence scoring splits at ``head_dense`` (embed -> head_dense ->
    head_after_dense), gives the logits of transformers' own EsmcForMaskedLM on the same weights: the
    hand-written rest of the head (GELU, LayerNorm, decoder) is the reference head, pads masked alike."""
    m = esmc(seed=4).eval()
    toks = m.batch(["MKLVAGC", "WY", "ACDEFGHIKLMNPQ"])
    with torch.no_grad():
        # trained-looking head weights: LayerNorm affine and biases away from their init of 1 and 0
        for param in m.hf.lm_head.parameters():
            param.add_(0.5 * torch.randn_like(param))
        reference = m.hf(input_ids=toks, attention_mask=toks.ne(m.tokens.pad_idx).long()).logits
        ours = m(toks)
        assert ours.shape == (3, toks.shape[1], m.tokens.vocab_size)
        assert torch.allclose(ours, reference, atol=1e-5)
        # the split really goes through head_dense: the block influence scoring takes its gradient in
        assert m.head_dense is m.hf.lm_head.dense
        y = m.head_dense(m.embed(toks))
        assert y.shape[-1] == m.head_dense.out_features
        assert torch.allclose(m.head_after_dense(y), reference, atol=1e-5)
        # and the comparison can fail: a head without its GELU or its LayerNorm gives other logits
        head = m.hf.lm_head
        assert not torch.allclose(head.decoder(head.layer_norm(y)), reference, atol=1e-3)
        assert not torch.allclose(head.decoder(torch.nn.functional.gelu(y)), reference, atol=1e-3)
    assert m.last_block is m.hf.esmc.layers[-1]


def test_rnafm_head_split_goes_through_head_dense():
    """RNA-FM's forward pass (checked against fair-esm above) runs through ``head_dense``: changing
    its weights changes the logits."""
    m = rna().eval()
    toks = m.batch(["ACGUAC", "GG"])
    with torch.no_grad():
        before = m(toks)
        assert m.head_dense.out_features == m.head_dense(m.embed(toks)).shape[-1]
        m.head_dense.weight.add_(0.1 * torch.randn_like(m.head_dense.weight))
        assert not torch.allclose(m(toks), before, atol=1e-4)
    assert m.last_block is not None


# -- registry ---------------------------------------------------------------------------------------------
def test_official_rnafm_shape_and_size():
    spec = SIZES["rnafm"]["official"]
    with torch.device("meta"):
        m = build_from_spec(spec)
    assert (m.net.args.layers, m.net.args.embed_dim, m.net.args.attention_heads) == (12, 640, 20)
    assert m.head_dense.weight.shape == (640, 640)
    assert m.net.embed_positions.weight.shape == (1026, 640)  # 1024 positions + padding offset
    assert 99.3e6 < param_count(m) < 99.7e6  # published: ~99.5M


@pytest.mark.parametrize(
    ("size", "hidden", "layers", "heads"), [("300m", 960, 30, 15), ("600m", 1152, 36, 18)]
)
def test_official_esmc_shapes(size, hidden, layers, heads):
    with torch.device("meta"):
        m = build_from_spec(SIZES["esmc"][size])
    c = m.hf.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (hidden, layers, heads)
    assert c.vocab_size == 64 and m.head_dense.weight.shape == (hidden, hidden)


def test_overrides_and_bad_names():
    spec = resolve_spec("rnafm", "tiny", layers=2, hidden=None)
    assert spec.layers == 2 and spec.size == "tiny+layers=2"
    assert resolve_spec("rnafm", "tiny").size == "tiny"
    with pytest.raises(ConfigError, match="unknown rnafm size"):
        resolve_spec("rnafm", "300m")
    with pytest.raises(ConfigError, match="divisible"):
        resolve_spec("rnafm", "tiny", hidden=30, heads=4)
    with pytest.raises(ConfigError, match="unknown model setting"):
        resolve_spec("esmc", "tiny", depth=3)


def test_seeded_build_is_reproducible():
    a, b, c = rna(seed=1), rna(seed=1), rna(seed=2)
    assert torch.equal(a.head_dense.weight, b.head_dense.weight)
    assert not torch.equal(a.head_dense.weight, c.head_dense.weight)


# -- own model format -------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [rna, esmc])
def test_save_load_round_trip(tmp_path, make):
    m = make(seed=3).eval()
    path = save_model(m, tmp_path / "model.pt")
    raw = torch.load(path, weights_only=True)  # plain tensors and numbers only
    assert raw["format"] == "bioprune.model" and raw["spec"]["layers"] == 2
    back = load_model(path)
    assert back.spec == m.spec
    sd, bd = m.state_dict(), back.state_dict()
    assert sd.keys() == bd.keys() and all(torch.equal(sd[k], bd[k]) for k in sd)
    toks = m.batch(["ACGUAGC" if make is rna else "MKLVAG"])
    with torch.no_grad():
        assert torch.equal(m(toks), back(toks))


def test_own_format_shape_mismatch_names_key(tmp_path):
    m = rna()
    path = save_model(m, tmp_path / "model.pt")
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["net.layers.1.fc1.weight"] = torch.zeros(3, 3)
    torch.save(raw, path)
    with pytest.raises(InputError) as err:
        load_model(path)
    msg = str(err.value)
    assert str(path) in msg and "net.layers.1.fc1.weight" in msg and "[3, 3]" in msg


def test_truncated_and_foreign_files(tmp_path):
    path = save_model(rna(), tmp_path / "model.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match="corrupt or truncated") as err:
        load_model(cut)
    assert str(cut) in str(err.value)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(InputError, match=str(text)):
        load_model(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="not a recognised model file"):
        load_model(other)
    with pytest.raises(InputError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pt")


def test_a_text_file_as_model_is_one_line(tmp_path):
    """A text file as --model used to raise IndexError (pop from empty list) or KeyError (issue 12.2)."""
    for i, text in enumerate(["not a checkpoint\n", "hello world\n", "\n", "{}\n", "e"]):
        path = tmp_path / f"notes{i}.txt"
        path.write_text(text)
        with pytest.raises(InputError, match=r"notes\d.txt: is a text file, not a PyTorch checkpoint"):
            load_model(path)


def test_garbage_checkpoints_never_escape_the_safe_loader(tmp_path):
    """Random bytes, bit-flipped and cut model files: each either loads or is one InputError line that
    never advises weights_only=False (unsafe). Before the fix 41 of 453 such files escaped as
    IndexError, KeyError or struct.error (issue 12.2)."""
    import random

    blob = save_model(rna(), tmp_path / "good.pt").read_bytes()
    rng = random.Random(0)
    files = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 400))) for _ in range(60)]
    for _ in range(30):
        flipped = bytearray(blob)
        for _ in range(rng.randint(1, 20)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        files.append(bytes(flipped))
    files += [blob[: rng.randrange(len(blob))] for _ in range(30)]
    errors = 0
    for i, data in enumerate(files):
        path = tmp_path / f"g{i}.pt"
        path.write_bytes(data)
        try:
            load_model(path)
        except InputError as exc:
            errors += 1
            message = str(exc)
            assert message.startswith(str(path)) and "\n" not in message and "weights_only" not in message
    assert errors > 60  # the random bytes at least


def test_malicious_pickle_message_gives_no_unsafe_advice(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "bioprune.model", "x": Payload()}, path)
    for opaque in (False, True):
        with pytest.raises(InputError) as err:
            safe_load(path, opaque=opaque)
        message = str(err.value)
        assert "system" in message and "weights_only" not in message and "\n" not in message


def _own_file(tmp_path, name, **changes):
    raw = torch.load(save_model(rna(), tmp_path / "base.pt"), weights_only=True)
    raw.update(changes)
    path = tmp_path / name
    torch.save(raw, path)
    return path


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"layers": "2"}, "layers must be a positive integer, got '2'"),
        ({"hidden": 30, "heads": 4}, "hidden size 30 is not divisible by 4 attention heads"),
        ({"ffn": -64}, "ffn must be a positive integer, got -64"),
        ({"layers": 0}, "layers must be a positive integer, got 0"),
        ({"backend": "gpt"}, "unknown backend 'gpt'"),
        ({"heads": True}, "heads must be a positive integer, got True"),
        ({"max_tokens": 2}, "max_tokens must leave room"),
        ({"layers": 3}, "missing key 'net.layers.2.self_attn.k_proj.weight'"),
    ],
)
def test_a_bad_spec_is_one_line(tmp_path, spec, fragment):
    """String layers, hidden not a multiple of heads, negative sizes gave TypeError/ValueError/
    RuntimeError from building the model (issue 12.2)."""
    base = torch.load(save_model(rna(), tmp_path / "base.pt"), weights_only=True)["spec"]
    path = _own_file(tmp_path, "bad.pt", spec={**base, **spec})
    with pytest.raises(InputError, match=re.escape(fragment)) as err:
        load_model(path)
    assert str(err.value).startswith(f"{path}: ")


def test_a_huge_spec_is_refused_before_allocating(tmp_path):
    """A 1.4 KB file claiming a model of hundreds of GB used to start building it (issue 12.2)."""
    import resource

    spec = dict(backend="rnafm", layers=200, hidden=20000, heads=100, ffn=80000, max_tokens=1024)
    path = tmp_path / "huge.pt"
    torch.save({"format": "bioprune.model", "version": 1, "spec": spec, "state_dict": {}}, path)
    assert path.stat().st_size < 2000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match="the spec needs at least 960,000,000,000 weights, the file holds 0"):
        load_model(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing built


def test_mixed_key_types_are_one_line(tmp_path):
    """A dict with int and str keys gave TypeError from sorting its keys (issue 12.2)."""
    path = tmp_path / "mixed.pt"
    torch.save({1: torch.zeros(1), "a": torch.zeros(1)}, path)
    with pytest.raises(InputError, match="not a recognised model file.*top-level keys"):
        load_model(path)
    own = _own_file(tmp_path, "own_mixed.pt")
    raw = torch.load(own, weights_only=True)
    raw["state_dict"][7] = torch.zeros(1)
    torch.save(raw, own)
    with pytest.raises(InputError, match="unexpected key 7"):
        load_model(own)


# -- official RNA-FM layout -------------------------------------------------------------------------------
class TrainingMeter:
    """Stands for the fairseq/omegaconf objects a real training checkpoint pickles; never rebuilt."""

    def __init__(self):
        self.sum = 1.5

    def __setstate__(self, state):
        raise AssertionError("a foreign class from the checkpoint was instantiated")


def official_checkpoint(
    model, *, prefix="encoder.encoder.", with_contact=True, args_overrides=None, untied_head=False
):
    """A random-init checkpoint in the layout of RNA-FM_pretrained.pth (fairseq training checkpoint).
    As fairseq saves it, lm_head.weight is the embedding's tensor (one storage), unless ``untied_head``."""
    a = model.net.args
    args = argparse.Namespace(
        arch="roberta_large",
        encoder_layers=a.layers,
        encoder_embed_dim=a.embed_dim,
        encoder_ffn_embed_dim=a.ffn_embed_dim,
        encoder_attention_heads=a.attention_heads,
        max_positions=a.max_positions,
        dropout=0.1,
        mask_prob=0.15,
        **(args_overrides or {}),
    )
    state = {
        k.replace("encoder.encoder.", prefix, 1): v.clone() for k, v in official_state_dict(model).items()
    }
    if not untied_head:
        state[prefix + "lm_head.weight"] = state[prefix + "embed_tokens.weight"]
    if with_contact:
        n = a.layers * a.attention_heads
        state[prefix + "contact_head.regression.weight"] = torch.zeros(1, n)
        state[prefix + "contact_head.regression.bias"] = torch.zeros(1)
    return {
        "args": args,
        "cfg": None,
        "model": state,
        "criterion": None,
        "optimizer_history": [
            {"criterion_name": "MaskedLmLoss", "optimizer_name": "FairseqAdam", "num_updates": 7}
        ],
        "task_state": {},
        "extra_state": {"epoch": 3, "meters": {"loss": TrainingMeter()}},
        "last_optimizer_state": {"state": {}, "param_groups": []},
    }


@pytest.mark.parametrize("prefix", ["encoder.encoder.", "encoder.sentence_encoder."])
def test_official_rnafm_checkpoint_round_trip(tmp_path, prefix):
    m = rna(seed=5).eval()
    data = official_checkpoint(m, prefix=prefix)
    path = tmp_path / "RNA-FM_pretrained.pth"
    torch.save(data, path)
    with pytest.raises(Exception):  # noqa: B017 - plain weights_only loading refuses this file ...
        torch.load(path, weights_only=True)
    loaded = load_model(path)  # ... ours reads it without instantiating TrainingMeter
    assert loaded.spec.backend == "rnafm" and loaded.net.args.layers == 2
    ours, orig = loaded.state_dict(), m.state_dict()
    mask = m.tokens.mask_idx
    for k in orig:
        if k in ("net.embed_tokens.weight", "net.lm_head.weight"):
            # the official loader zeroes the <mask> row; everything else is kept
            assert torch.count_nonzero(ours[k][mask]) == 0
            keep = torch.arange(orig[k].shape[0]) != mask
            assert torch.equal(ours[k][keep], orig[k][keep])
        else:
            assert torch.equal(ours[k], orig[k]), k
    toks = m.batch(["ACGUAGGCUA", "GCU"])
    with torch.no_grad():
        assert torch.allclose(loaded(toks)[..., :mask], m(toks)[..., :mask], atol=1e-6)


def test_official_checkpoint_with_untied_head_keeps_its_mask_row(tmp_path):
    """The official loader zeroes <mask> in the checkpoint's embedding, then loads lm_head.weight into the
    same tied tensor: an untied copy's <mask> row survives (compat scores depend on it)."""
    m = rna(seed=6).eval()
    data = official_checkpoint(m, untied_head=True)
    head = data["model"]["encoder.encoder.lm_head.weight"]
    head += 0.25  # untied and different from the embedding
    path = tmp_path / "RNA-FM_pretrained.pth"
    torch.save(data, path)
    loaded = load_model(path).state_dict()
    mask = m.tokens.mask_idx
    assert torch.count_nonzero(head[mask]) > 0
    for k in ("net.embed_tokens.weight", "net.lm_head.weight"):  # one tied tensor: the head's values
        assert torch.equal(loaded[k], head), k


def test_official_checkpoint_stub_keeps_foreign_state(tmp_path):
    data = official_checkpoint(rna())
    path = tmp_path / "x.pth"
    torch.save(data, path)
    raw = safe_load(path, opaque=True)
    meter = raw["extra_state"]["meters"]["loss"]
    assert isinstance(meter, Opaque) and meter.state == {"sum": 1.5}
    assert raw["args"].encoder_layers == 2


def test_official_checkpoint_without_contact_head_loads(tmp_path):
    path = tmp_path / "RNA-FM_pretrained.pth"
    torch.save(official_checkpoint(rna(), with_contact=False), path)
    assert load_model(path).spec.layers == 2


@pytest.mark.parametrize(
    ("edit", "expect"),
    [
        (
            lambda d: d["model"].pop("encoder.encoder.layers.1.fc2.bias"),
            "missing key 'net.layers.1.fc2.bias'",
        ),
        (lambda d: d["model"].update({"encoder.encoder.extra.weight": torch.zeros(1)}), "unexpected key"),
        (
            lambda d: d["model"].update({"encoder.encoder.layers.0.fc1.bias": torch.zeros(5)}),
            "'net.layers.0.fc1.bias' has shape [5]",
        ),
        (lambda d: setattr(d["args"], "encoder_layers", 3), "encoder_layers=3"),
        (
            lambda d: d["model"].update({"encoder.encoder.embed_tokens.weight": torch.zeros(33, 32)}),
            "33 rows",
        ),
    ],
)
def test_official_checkpoint_mismatch_errors(tmp_path, edit, expect):
    data = official_checkpoint(rna())
    edit(data)
    path = tmp_path / "RNA-FM_pretrained.pth"
    torch.save(data, path)
    with pytest.raises(InputError) as err:
        load_model(path)
    assert str(path) in str(err.value) and expect in str(err.value)


# -- ESM-C transformers folder ------------------------------------------------------------------------------
def test_esmc_hf_folder_round_trip(tmp_path):
    from bioprune.models.esmc import export_hf

    m = esmc(seed=2).eval()
    export_hf(m, tmp_path / "esmc")
    assert json.loads((tmp_path / "esmc" / "config.json").read_text())["model_type"] == "esmc"
    back = load_model(tmp_path / "esmc")
    toks = m.batch(["MKLVAGW", "MK"])
    with torch.no_grad():
        assert torch.allclose(back(toks), m(toks), atol=1e-6)
    assert back.spec.backend == "esmc" and back.spec.hidden == 32


def test_esmc_hf_folder_missing_key_names_file(tmp_path):
    from safetensors.torch import load_file, save_file

    from bioprune.models.esmc import export_hf

    folder = tmp_path / "esmc"
    export_hf(esmc(), folder)
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    del state["esmc.layers.1.mlp.up_proj.weight"]
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(InputError) as err:
        load_model(folder)
    assert str(weights) in str(err.value) and "esmc.layers.1.mlp.up_proj.weight" in str(err.value)


def test_esmc_hf_folder_wrong_model_type(tmp_path):
    from bioprune.models.esmc import export_hf

    folder = tmp_path / "esmc"
    export_hf(esmc(), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "bert"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="expected 'esmc'"):
        load_model(folder)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {
                "num_hidden_layers": 200,
                "hidden_size": 20000,
                "num_attention_heads": 100,
                "num_key_value_heads": 100,
            },
            "checkpoint does not fit the model",
        ),
        ({"hidden_size": "x"}, "invalid ESM-C config"),
    ],
)
def test_esmc_hf_folder_with_a_bad_config_is_one_line_and_allocates_nothing(tmp_path, change, fragment):
    """A config.json claiming a huge model used to build it before reading the weights; a bad field
    gave a two-line message (issue 12.2)."""
    import resource

    from bioprune.models.esmc import export_hf

    folder = tmp_path / "esmc"
    export_hf(esmc(), folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match=fragment) as err:
        load_model(folder)
    assert "\n" not in str(err.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KB


def test_official_checkpoint_with_a_stray_layer_is_one_line(tmp_path):
    """Without args to compare with, a 'layers.99999.' key made the loader build 100,000 layers before
    comparing shapes (issue 12.2)."""
    data = official_checkpoint(rna(seed=5))
    del data["args"]  # a cfg-only export: the layer count comes from the weights
    data["model"]["encoder.encoder.layers.99999.fc1.weight"] = torch.zeros(2, 2)
    path = tmp_path / "RNA-FM_pretrained.pth"
    torch.save(data, path)
    with pytest.raises(InputError, match="has weights of layer 99999 but none of layer 2"):
        load_model(path)
