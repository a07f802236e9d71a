import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vcq.ar import ARConfig, ARModel, count_params, load_ar, save_ar, z_loss
from vcq.quantizers.leech import leech_codebook
from vcq.sampling import generate

TINY = dict(vocab_size=32, seq_len=16, num_classes=4, n_layer=2, n_head=2, dim=32)


def tiny(**kw):
    torch.manual_seed(0)
    return ARModel(ARConfig(**{**TINY, **kw})).eval()


def test_shapes():
    m = tiny()
    tok = torch.randint(0, 32, (3, 16))
    out = m(tok, torch.tensor([0, 1, 4]))
    assert out.logits.shape == (3, 16, 32) and out.ce.shape == (3, 16) and out.terms == {}
    assert torch.equal(out.loss, out.ce.mean())
    ce = F.cross_entropy(out.logits.flatten(0, 1), tok.flatten(), reduction="none")
    assert torch.allclose(out.ce, ce.view(3, 16))


def test_z_loss_joins_the_loss():
    m = tiny()
    tok, lab = torch.randint(0, 32, (3, 16)), torch.tensor([0, 1, 4])
    out = m(tok, lab, z_weight=0.5)
    assert torch.allclose(out.loss, out.ce.mean() + z_loss(out.logits, 0.5))


K_T = [2, 2, 4, 4, 8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 32]


def test_restrict_k_off_scores_every_position_over_all_k_max_codes():
    m = tiny(k_sizes=K_T)
    tok = torch.randint(0, 2, (3, 16))
    out = m(tok, torch.tensor([0, 1, 4]))
    full = F.cross_entropy(out.logits.flatten(0, 1), tok.flatten(), reduction="none")
    assert torch.allclose(out.ce, full.view(3, 16))


def test_restrict_k_on_gives_codes_beyond_k_t_no_probability():
    m = tiny(k_sizes=K_T, restrict_k=True)
    tok = torch.randint(0, 2, (3, 16))
    out = m(tok, torch.tensor([0, 1, 4]))
    for t, k in enumerate(K_T):
        # the loss at t is the cross-entropy over the first K_t logits alone
        ce = F.cross_entropy(out.logits[:, t, :k], tok[:, t], reduction="none")
        assert torch.allclose(out.ce[:, t], ce, atol=1e-6)
    # mass beyond K_t no longer counts: every token costs less than unrestricted, where K_t < K_max
    off = F.cross_entropy(out.logits.flatten(0, 1), tok.flatten(), reduction="none").view(3, 16)
    below = torch.tensor(K_T) < 32
    assert bool((out.ce[:, below] < off[:, below]).all())
    assert torch.allclose(out.ce[:, ~below], off[:, ~below])
    with pytest.raises(ValueError, match="restrict_k needs 16 K_t values"):
        ARConfig(**TINY, restrict_k=True)


def test_restrict_k_on_renormalises_the_factorised_head_over_the_first_k_t_codes():
    k_sizes = np.linspace(2, 1104, 16).astype(int).tolist()
    m = tiny(head="leech_factorized", vocab_size=1104, k_sizes=k_sizes, restrict_k=True)
    m.set_codebook(leech_codebook(["4^2"]))
    tok = torch.zeros(2, 16, dtype=torch.long)
    out = m(tok, torch.tensor([0, 1]))
    joint = m.vocab_logits(out.logits)  # (2, 16, 1104) log-probs of every code
    for t, k in enumerate(k_sizes):
        ref = -(joint[:, t, 0] - joint[:, t, :k].logsumexp(-1))
        assert torch.allclose(out.ce[:, t], ref, atol=1e-4)


def test_causal_future_does_not_change_past():
    m = tiny()
    tok = torch.randint(0, 32, (2, 16))
    tok2 = tok.clone()
    tok2[:, 10:] = (tok2[:, 10:] + 1) % 32
    lab = torch.tensor([1, 2])
    a, b = m(tok, lab).logits, m(tok2, lab).logits
    # logits at t predict tokens[t] from tokens[:t]; changing tokens[10:] only affects t >= 11
    assert torch.allclose(a[:, :11], b[:, :11], atol=1e-5)
    assert not torch.allclose(a[:, 11:], b[:, 11:])


def test_kv_cache_equals_full_forward():
    m = tiny()
    tok, lab = torch.randint(0, 32, (3, 16)), torch.tensor([0, 1, 4])
    full = m(tok, lab).logits
    cache = m.new_cache(3)
    outs = [m.forward_embeds(m.embed(lab, None), cache)]
    outs += [m.forward_embeds(m.embed(None, tok[:, t : t + 1]), cache) for t in range(15)]
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)


@pytest.mark.parametrize(
    "layers,heads,dim,target", [(12, 12, 768, 115e6), (24, 16, 1024, 343e6), (32, 20, 1280, 684e6)]
)
def test_param_counts_match_paper(layers, heads, dim, target):
    n = count_params(ARConfig(n_layer=layers, n_head=heads, dim=dim))["total"]
    assert abs(n / target - 1) < 0.04


def test_class_dropout_uses_null_class():
    m = tiny(class_dropout=1.0).train()
    assert (m.drop_labels(torch.tensor([0, 1, 2])) == 4).all()
    assert (m.eval().drop_labels(torch.tensor([0, 1, 2])) == torch.tensor([0, 1, 2])).all()


def test_save_load_roundtrip(tmp_path):
    m = tiny()
    save_ar(tmp_path / "m.pt", m, m.cfg, {"val_loss": 1.0})
    m2, extra = load_ar(tmp_path / "m.pt")
    assert extra == {"val_loss": 1.0} and m2.cfg == m.cfg
    tok, lab = torch.randint(0, 32, (2, 16)), torch.tensor([0, 1])
    assert torch.equal(m(tok, lab).logits, m2(tok, lab).logits)


def test_z_loss_is_weighted_squared_log_partition():
    assert torch.isclose(
        z_loss(torch.zeros(2, 10), 1e-4), torch.tensor(1e-4) * torch.log(torch.tensor(10.0)) ** 2
    )
    assert float(z_loss(torch.randn(2, 10), 0.0)) == 0.0


def test_unknown_head_is_rejected():
    with pytest.raises(ValueError, match="unknown AR head 'mlp'.*leech_factorized"):
        ARConfig(head="mlp")


def test_factorized_leech_head_trains_saves_and_samples_within_k_t(tmp_path):
    m = tiny(head="leech_factorized", vocab_size=1104).train()
    m.output.set_codes(leech_codebook(["4^2"]))
    tok, lab = torch.randint(0, 1104, (2, 16)), torch.tensor([0, 1])
    out = m(tok, lab)
    assert out.logits.shape == (2, 16, 24, 9)
    # the same loss path as the softmax head: the head's own cross-entropy, no case in the loop
    assert out.ce.shape == (2, 16)
    assert torch.allclose(out.ce, m.output.cross_entropy(out.logits, tok))
    out.loss.backward()
    assert (
        m.output.proj.weight.grad.abs().sum() > 0 and m.tok_embeddings.weight.grad.abs().sum() > 0
    )
    save_ar(tmp_path / "m.pt", m, m.cfg)
    m2, _ = load_ar(tmp_path / "m.pt")
    assert torch.equal(m2.output.code_labels, m.output.code_labels)
    k_sizes = np.linspace(2, 1104, 16).astype(int)
    preset = {"guidance": "codebook-aware", "scale": 2.0, "power": 1.0}
    a = generate(m2, lab, k_sizes, preset, torch.Generator().manual_seed(3))
    b = generate(m2, lab, k_sizes, preset, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and bool((a < torch.as_tensor(k_sizes)).all())


def test_code_vector_input_is_a_linear_map_of_the_stored_codes():
    codes = torch.randn(32, 6)
    codes[5] = codes[3]
    m = tiny(token_input="codes", code_dim=6)
    m.set_codebook(codes)
    emb = m.embed(None, torch.tensor([[3, 5, 7]]))
    assert torch.allclose(emb[0, 0], emb[0, 1]) and torch.allclose(
        emb[0, 2], m.tok_embeddings(codes[7])
    )
    assert (
        count_params(m.cfg)["tok_embeddings"] == 6 * 32 < count_params(tiny().cfg)["tok_embeddings"]
    )
    with pytest.raises(ValueError, match="needs code_dim"):
        ARConfig(token_input="codes")
    with pytest.raises(ValueError, match="codebook has 31 codes"):
        m.set_codebook(codes[:31])
