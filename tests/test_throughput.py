"""The fast paths give the results of the plain ones: fp32 code search under autocast, flattened
cross-entropy, uint8 views, (row, view) batch reads, bf16 sampling."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vcq.ar import ARConfig, ARModel
from vcq.data.tokens import TokenStore, read_pairs
from vcq.data.views import make_views
from vcq.quantizers import build_quantizer
from vcq.sampling import generate
from vcq.train.batches import TokenBatches


@pytest.mark.parametrize("kind", ["vcq", "leech"])
def test_code_indices_are_identical_under_bf16_autocast(kind):
    torch.manual_seed(0)
    if kind == "leech":
        q, dim = (
            build_quantizer(
                {"kind": "leech", "leech": {"shapes": ["4^2"]}}, torch.full((16,), 1104)
            ),
            24,
        )
    else:
        q, dim = (
            build_quantizer(
                {"kind": "vcq", "vcq": {"code_dim": 8}}, torch.linspace(2, 4096, 16).long()
            ),
            8,
        )
    z = torch.randn(64, 16, dim)
    plain = q(z).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = q(z).indices
    assert torch.equal(plain, mixed)


def test_flattened_cross_entropy_gives_the_per_position_loss_of_the_transposed_layout():
    torch.manual_seed(0)
    m = ARModel(ARConfig(vocab_size=32, seq_len=8, num_classes=3, n_layer=1, n_head=2, dim=16))
    tok = torch.randint(0, 32, (5, 8))
    logits = m(tok, torch.tensor([0, 1, 2, 0, 1])).logits
    reference = F.cross_entropy(logits.transpose(1, 2), tok, reduction="none")
    assert torch.allclose(m.token_ce(logits, tok), reference, atol=1e-6, rtol=0)
    assert m.token_ce(logits, tok).shape == (5, 8)


def test_uint8_views_normalised_equal_the_float_views():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for recipe in ("center", "tencrop"):
        u8 = make_views(image, recipe, 36, 32, uint8=True)
        assert u8.dtype == torch.uint8
        assert torch.equal(u8.float() / 127.5 - 1, make_views(image, recipe, 36, 32))


@pytest.mark.parametrize("in_memory", [True, False])
def test_token_batches_read_exactly_the_requested_pairs(tmp_path, in_memory, token_store):
    n, length = 50, 8
    tok = np.random.default_rng(0).integers(0, 100, (n, 4, length)).astype(np.uint16)
    # one class per row, chunks of 4 rows
    token_store(tmp_path / "t.h5", tok, np.full(length, 100), np.arange(n), n, chunk_rows=4)
    rows, views = np.array([7, 3, 7, 49, 0]), np.array([1, 0, 2, 3, 1])
    with TokenStore(tmp_path / "t.h5") as store:
        assert np.array_equal(read_pairs(store.tokens, rows, views), tok[rows, views])
        batches = TokenBatches(store, in_memory)
        assert batches.in_memory == in_memory
        keys = [(rows, views), (rows[::-1], views[::-1]), (rows[:2], views[:2])]
        for (r, v), (t, lab) in zip(keys, batches.batches(iter(keys)), strict=True):
            assert t.dtype == torch.int64 and np.array_equal(t.numpy(), tok[r, v].astype(np.int64))
            assert np.array_equal(lab.numpy(), r)


def test_sampling_under_bf16_autocast_keeps_a_matching_kv_cache():
    torch.manual_seed(0)
    m = ARModel(
        ARConfig(vocab_size=16, seq_len=6, num_classes=2, n_layer=1, n_head=2, dim=16)
    ).eval()
    preset = {"guidance": "constant", "scale": 1.0}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = generate(
            m, torch.tensor([0, 1]), np.full(6, 16), preset, torch.Generator().manual_seed(0)
        )
    assert out.shape == (2, 6) and int(out.max()) < 16


def test_step_sampler_splits_each_global_batch_across_ranks_with_the_same_crops():
    from vcq.data.images import StepBatchSampler

    one = list(StepBatchSampler(50, 8, seed=3, start=2, stop=9))
    ranks = [
        list(StepBatchSampler(50, 4, seed=3, start=2, stop=9, rank=r, world_size=2)) for r in (0, 1)
    ]
    assert len(one) == 7 and all(a + b == c for a, b, c in zip(*ranks, one, strict=True))
    resumed = list(StepBatchSampler(50, 8, seed=3, start=5, stop=9))
    assert resumed == one[3:]
