import torch

from vcq.quantizers.base import build_quantizer, usage_histogram, usage_stats

CFG = {"kind": "vcq_bridge", "vcq_bridge": {"code_dim": 8, "group": 4, "width": 32, "heads": 2}}


def test_gradients_reach_bridge_and_export_loads():
    torch.manual_seed(0)
    k_sizes = [16, 32, 64]
    q = build_quantizer(CFG, k_sizes)
    z = torch.randn(4, 3, 8)
    out = q(z)
    out.loss.backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in q.bridge.compress.parameters()
    )
    assert q.embedding.grad.abs().sum() > 0
    assert bool((out.indices < torch.tensor(k_sizes)).all())
    spec, plain = q.export(CFG)
    assert spec == {"kind": "vcq", "vcq": {"code_dim": 8}} and not hasattr(plain, "bridge")
    assert torch.allclose(plain.codebook_vectors(), q.codebook_vectors(), atol=1e-6)
    assert torch.equal(plain(z).indices, out.indices)
    stats = usage_stats(usage_histogram(out.indices, q.k_max), q.k_sizes)
    assert stats["utilization"].shape == (3,)


def test_bridged_tokenizer_exports_to_a_plain_codebook_that_encodes_identically():
    from vcq.tokenizer import Tokenizer, TokenizerConfig, export_for_inference

    torch.manual_seed(0)
    cfg = TokenizerConfig(
        image_size=16,
        patch_size=8,
        enc_width=32,
        enc_depth=1,
        enc_heads=2,
        dec_width=32,
        dec_depth=1,
        dec_heads=2,
        k_sizes=[16, 32, 64, 64],
        quantizer=CFG,
    )
    tok = Tokenizer(cfg).eval()
    plain = export_for_inference(tok)
    assert plain.cfg.quantizer["kind"] == "vcq" and not hasattr(plain.quantizer, "bridge")
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    (idx_a, q_a), (idx_b, q_b) = tok.encode(x), plain.encode(x)
    assert torch.equal(idx_a, idx_b)
    torch.testing.assert_close(tok.decode(q_a), plain.decode(q_b))
