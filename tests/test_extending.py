"""docs/EXTENDING.md followed literally: a quantizer added from outside the package."""

import pytest
import torch
import torch.nn.functional as F
import yaml

from vcq.config import ConfigError, load_config, tokenizer_section
from vcq.quantizers import Quantizer, QuantizerOutput, base, register_quantizer
from vcq.quantizers.base import option


class RoundQuantizer(Quantizer):
    """Scalar quantizer: latent size 1; code k is the k-th of `levels` points over [-1, 1]."""

    options = {
        "levels": option(16, "Points of the grid (its capacity).", type="integer", minimum=2),
    }

    def __init__(self, k_sizes, levels: int = 16) -> None:
        super().__init__(k_sizes)
        self.register_buffer("grid", torch.linspace(-1, 1, levels)[: self.k_max], persistent=False)

    @classmethod
    def latent_dim(cls, options: dict) -> int:
        return 1

    @classmethod
    def capacity(cls, options: dict) -> int | None:
        return options["levels"]

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        dist = (z - self.grid).abs()  # (B, L, K_max)
        beyond = torch.arange(self.k_max, device=z.device) >= self.k_sizes.to(z.device)[:, None]
        indices = dist.masked_fill(beyond, float("inf")).argmin(-1)
        q = self.lookup(indices)
        return QuantizerOutput(z + (q - z).detach(), indices, F.mse_loss(z, q.detach()))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.grid[indices][..., None]

    def codebook_vectors(self) -> torch.Tensor:
        return self.grid[:, None]


@pytest.fixture
def round_kind(monkeypatch):
    """The toy kind `round`, registered for this test only."""
    monkeypatch.setattr(base, "_KINDS", dict(base._KINDS))
    register_quantizer("round", RoundQuantizer)


def config_text(quantizer: str, k_max: int = 64) -> str:
    return (
        f"experiment: t\nschedules: [{{name: c, kind: cosine, k_min: 2, k_max: {k_max}}}]\n"
        f"tokenizer: {{quantizer: {quantizer}}}\n"
    )


def test_a_registered_quantizer_is_configured_by_its_own_options(round_kind, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(config_text("{kind: round, round: {levels: 64}}"))
    assert tokenizer_section(load_config(path), "c")["quantizer"] == {
        "kind": "round",
        "round": {"levels": 64},
    }
    for bad, key in (
        ("{kind: round, round: {levelz: 64}}", "'tokenizer.quantizer.round.levelz'"),
        ("{kind: round, round: {levels: 1}}", "'tokenizer.quantizer.round.levels'"),
        ("{kind: round, round: {levels: 32}}", "'schedules.0.k_max': 64 exceeds the 32 codes"),
    ):
        path.write_text(config_text(bad))
        with pytest.raises(ConfigError, match=key):
            load_config(path)


def test_a_registered_quantizer_trains_exports_and_loads(
    round_kind, tokenizer_cfg, image_folder, tmp_path
):
    from vcq.data.images import ImageFolderDataset
    from vcq.tokenizer import load_tokenizer
    from vcq.train.tokenizer import train

    cfg = tokenizer_cfg(steps=1)
    cfg["tokenizer"]["quantizer"] = {"kind": "round", "round": {"levels": 64}}
    root = image_folder(tmp_path / "images", n=4)
    train(cfg, "cosine", ImageFolderDataset(root), tmp_path / "final.pt")
    tok = load_tokenizer(tmp_path / "final.pt")
    assert isinstance(tok.quantizer, RoundQuantizer) and tok.cfg.code_dim == 1
    assert tok.to_code.out_features == 1
    indices, _ = tok.encode(torch.rand(3, 3, 32, 32) * 2 - 1)
    assert bool((indices < torch.as_tensor(tok.k_sizes)).all())
    assert yaml.safe_load(yaml.safe_dump(tok.cfg.quantizer)) == cfg["tokenizer"]["quantizer"]
