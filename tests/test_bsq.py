import math

import pytest
import torch

from vcq.quantizers.base import build_quantizer
from vcq.quantizers.bsq import bsq_entropy_terms


def make(d=18):
    return build_quantizer({"kind": "bsq", "dim": d}, [2**d] * 4)


def test_codes_unit_norm_and_min_distance():
    q = make(6)
    codes = q.codebook_vectors()
    assert codes.shape == (64, 6)
    assert torch.allclose(codes.norm(dim=1), torch.ones(64))
    dist = torch.cdist(codes, codes) + 10 * torch.eye(64)
    assert math.isclose(float(dist.min()), 2 / math.sqrt(6), rel_tol=1e-5)


def test_index_code_roundtrip_and_gradient():
    torch.manual_seed(0)
    q = make()
    z = torch.randn(2, 4, 18, requires_grad=True)
    out = q(z)
    assert bool((out.indices < 2**18).all())
    assert torch.allclose(q.lookup(out.indices), out.quantized, atol=1e-6)
    (out.quantized.sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="code_dim 18"):
        q(torch.randn(1, 4, 8))


def test_entropy_limits():
    d = 18
    # confident, diverse codes: per-sample entropy -> 0, codebook entropy -> d·log 2
    u = torch.tensor([[1.0] * d, [-1.0] * d]) / d**0.5
    h_s, h_c = bsq_entropy_terms(u, tau=0.01)
    assert h_s < 1e-3 and math.isclose(float(h_c), d * math.log(2), rel_tol=1e-4)
    # all samples identical and confident: codebook entropy -> 0
    h_s, h_c = bsq_entropy_terms(u[:1].repeat(3, 1), tau=0.01)
    assert h_c < 1e-3
    # huge temperature: both maximal
    h_s, h_c = bsq_entropy_terms(u, tau=1e6)
    assert math.isclose(float(h_s), d * math.log(2), rel_tol=1e-4)
