import pytest
import torch

from vcq.quantizers.base import build_quantizer
from vcq.quantizers.leech import (
    FactorizedLeechHead,
    golay_codewords,
    leech_codebook,
    leech_shell,
    nearest_code,
    shape_slices,
    z_loss,
)


@pytest.fixture(scope="module")
def shell():
    return leech_shell()


def test_golay_weight_distribution():
    w = golay_codewords().sum(1)
    counts = {int(k): int(v) for k, v in zip(*torch.unique(w, return_counts=True))}
    assert counts == {0: 1, 8: 759, 12: 2576, 16: 759, 24: 1}


def test_shell_counts_norms_distinct(shell):
    assert shell.shape == (196560, 24)
    assert {k: s.stop - s.start for k, s in shape_slices().items()} == {
        "4^2": 1104, "2^8": 97152, "3^1 1^23": 98304}
    assert bool(((shell.long() ** 2).sum(1) == 32).all())
    assert len(torch.unique(shell, dim=0)) == 196560


def test_inner_product_distribution_and_min_chord(shell):
    v = shell.float()
    ip = v[[0, 5000, 120000, 196559]] @ v.T
    for row in ip:
        vals, counts = torch.unique(row, return_counts=True)
        assert vals.tolist() == [-32, -16, -8, 0, 8, 16, 32]
        assert counts.tolist() == [1, 4600, 47104, 93150, 47104, 4600, 1]
    # max cosine between distinct codes is 16/32, so the minimum chord is sqrt(2 - 1) = 1
    codes = leech_codebook()
    cos = ip / 32
    cos = cos.masked_fill(cos > 0.99, -1)
    assert torch.isclose(torch.sqrt(2 - 2 * cos.max()), torch.tensor(1.0))
    assert torch.allclose(codes.norm(dim=1), torch.ones(len(codes)))


def test_nearest_equals_brute_force():
    torch.manual_seed(0)
    codes = leech_codebook()
    z = torch.nn.functional.normalize(torch.randn(64, 24), dim=1)
    assert torch.equal(nearest_code(z, codes, chunk=5000), (z @ codes.T).argmax(1))
    limit = torch.randint(1, 3000, (64,))
    brute = (z @ codes.T).masked_fill(torch.arange(len(codes))[None] >= limit[:, None], -9).argmax(1)
    assert torch.equal(nearest_code(z, codes, limit, chunk=700), brute)


def test_subsets():
    assert leech_codebook(["4^2"]).shape == (1104, 24)
    assert leech_codebook(["3^1 1^23"], size=4096).shape == (4096, 24)
    with pytest.raises(ValueError, match="unknown Leech shapes"):
        leech_codebook(["5^1"])


def test_quantizer_prefix_and_straight_through():
    torch.manual_seed(0)
    sizes = [1104, 4096, 1104]
    q = build_quantizer({"kind": "leech"}, sizes)
    z = torch.randn(3, 3, 24, requires_grad=True)
    out = q(z)
    assert out.indices.shape == (3, 3) and float(out.loss) == 0.0
    assert bool((out.indices < torch.tensor(sizes)).all())
    assert torch.allclose(out.quantized, q.lookup(out.indices))
    out.quantized.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="code_dim 24"):
        q(torch.randn(1, 3, 16))


def test_factorized_head_roundtrip_and_z_loss():
    codes = leech_codebook()
    idx = torch.tensor([0, 1104, 98256, 196559])
    labels = FactorizedLeechHead.labels(codes, idx)
    assert labels.min() >= 0 and labels.max() <= 8
    assert torch.equal(FactorizedLeechHead.to_index(labels, codes), idx)
    assert FactorizedLeechHead(8)(torch.randn(2, 8)).shape == (2, 24, 9)
    logits = torch.zeros(2, 10)
    assert torch.isclose(z_loss(logits, 1e-4), torch.tensor(1e-4) * torch.log(torch.tensor(10.0)) ** 2)
