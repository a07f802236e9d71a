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
)


@pytest.fixture(scope="module")
def shell():
    return leech_shell()


def test_golay_weight_distribution():
    w = golay_codewords().sum(1)
    counts = {int(k): int(v) for k, v in zip(*torch.unique(w, return_counts=True), strict=True)}
    assert counts == {0: 1, 8: 759, 12: 2576, 16: 759, 24: 1}


def test_shell_counts_norms_distinct(shell):
    assert shell.shape == (196560, 24)
    assert {k: s.stop - s.start for k, s in shape_slices().items()} == {
        "4^2": 1104,
        "2^8": 97152,
        "3^1 1^23": 98304,
    }
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
    brute = (
        (z @ codes.T).masked_fill(torch.arange(len(codes))[None] >= limit[:, None], -9).argmax(1)
    )
    assert torch.equal(nearest_code(z, codes, limit, chunk=700), brute)


def test_subsets():
    assert leech_codebook(["4^2"]).shape == (1104, 24)
    assert leech_codebook(["3^1 1^23"], size=4096).shape == (4096, 24)
    with pytest.raises(ValueError, match="unknown Leech shapes"):
        leech_codebook(["5^1"])


def test_quantizer_prefix_and_straight_through():
    torch.manual_seed(0)
    k_sizes = [1104, 4096, 1104]
    q = build_quantizer({"kind": "leech"}, k_sizes)
    z = torch.randn(3, 3, 24, requires_grad=True)
    out = q(z)
    assert out.indices.shape == (3, 3) and float(out.loss) == 0.0
    assert bool((out.indices < torch.tensor(k_sizes)).all())
    assert torch.allclose(out.quantized, q.lookup(out.indices))
    out.quantized.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="code_dim 24"):
        q(torch.randn(1, 3, 16))


def test_factorized_head_scores_every_code_by_the_sum_of_its_coordinate_log_probs():
    codes = leech_codebook(["4^2"])
    head = FactorizedLeechHead(8, len(codes))
    head.set_codes(codes)
    labels = head.code_labels.long()
    assert (
        labels.min() == 0
        and labels.max() == 8
        and torch.equal(labels, FactorizedLeechHead.labels(codes, torch.arange(1104)))
    )
    logits = torch.randn(2, 3, 24, 9)
    lp = logits.log_softmax(-1)
    brute = lp[:, :, torch.arange(24), labels].sum(-1)  # (2, 3, 1104)
    assert torch.allclose(head.vocab_logits(logits), brute, atol=1e-5)
    tokens = torch.randint(0, 1104, (2, 3))
    assert torch.allclose(
        head.cross_entropy(logits, tokens), -brute.gather(-1, tokens[..., None])[..., 0], atol=1e-5
    )
    peaked = torch.full((24, 9), -20.0)
    peaked[torch.arange(24), labels[777]] = 20.0
    assert int(head.vocab_logits(peaked).argmax()) == 777
    assert head(torch.randn(2, 8)).shape == (2, 24, 9)
    with pytest.raises(ValueError, match="does not match vocab"):
        head.set_codes(codes[:10])
