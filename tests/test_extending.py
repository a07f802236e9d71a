"""docs/EXTENDING.md "Add a quantizer" followed literally: a kind in a module of its own, named by
the config's `plugins`, with no line in vcq."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from vcq.config import ConfigError, load_config, tokenizer_section
from vcq.quantizers import base

ROOT = Path(__file__).resolve().parents[1]

# The walk-through's module (`lab/round_quant.py`): one class and its registration at import.
ROUND_MODULE = textwrap.dedent(
    '''
    """A scalar quantizer for vcq: code k is the k-th of `levels` points over [-1, 1]."""

    import torch
    import torch.nn.functional as F

    from vcq.quantizers import Quantizer, QuantizerOutput, register_quantizer
    from vcq.quantizers.base import option


    class RoundQuantizer(Quantizer):
        """Scalar quantizer: latent size 1; code k is the k-th of `levels` points over [-1, 1]."""

        options = {
            "levels": option(16, "Points of the grid (its capacity).", type="integer", minimum=2)
        }

        def __init__(self, k_sizes, levels: int = 16) -> None:
            super().__init__(k_sizes)
            grid = torch.linspace(-1, 1, levels)[: self.k_max]
            self.register_buffer("grid", grid, persistent=False)

        @classmethod
        def latent_dim(cls, options: dict) -> int:
            return 1

        @classmethod
        def capacity(cls, options: dict) -> int | None:
            return options["levels"]

        def forward(self, z: torch.Tensor) -> QuantizerOutput:
            dist = (z - self.grid).abs()  # (B, L, K_max)
            k_sizes = self.k_sizes.to(z.device)[:, None]
            beyond = torch.arange(self.k_max, device=z.device) >= k_sizes
            indices = dist.masked_fill(beyond, float("inf")).argmin(-1)
            q = self.lookup(indices)
            return QuantizerOutput(z + (q - z).detach(), indices, F.mse_loss(z, q.detach()))

        def lookup(self, indices: torch.Tensor) -> torch.Tensor:
            return self.grid[indices][..., None]

        def codebook_vectors(self) -> torch.Tensor:
            return self.grid[:, None]


    register_quantizer("round", RoundQuantizer)
    '''
)


@pytest.fixture
def round_kind(monkeypatch) -> type:
    """The module's class, its registration undone after the test."""
    monkeypatch.setattr(base, "_KINDS", dict(base._KINDS))
    namespace: dict = {}
    exec(ROUND_MODULE, namespace)  # noqa: S102 (the walk-through's module)
    return namespace["RoundQuantizer"]


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


def test_a_plugin_that_cannot_be_imported_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("plugins: [no_such_vcq_plugin]\n" + config_text("{kind: vcq}"))
    with pytest.raises(ConfigError, match=r"'plugins\.0'.*no_such_vcq_plugin.*PYTHONPATH"):
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
    assert isinstance(tok.quantizer, round_kind) and tok.cfg.code_dim == 1
    assert tok.to_code.out_features == 1
    indices, _ = tok.encode(torch.rand(3, 3, 32, 32) * 2 - 1)
    assert bool((indices < torch.as_tensor(tok.k_sizes)).all())
    assert yaml.safe_load(yaml.safe_dump(tok.cfg.quantizer)) == cfg["tokenizer"]["quantizer"]


def test_a_plugin_quantizer_runs_in_the_workflow_steps_processes(tmp_path):
    """The kind is named only by the config: each step process imports the plugin itself."""
    from vcq.data.tokens import TokenStore

    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "round_quant.py").write_text(ROUND_MODULE)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "experiment": "t",
                "device": "cpu",
                "plugins": ["round_quant"],
                "schedules": [{"name": "r", "kind": "cosine", "k_min": 4, "k_max": 64}],
                "data": {
                    "root": str(tmp_path / "data"),
                    "num_classes": 2,
                    "train_per_class": 2,
                    "val_per_class": 1,
                },
                "tokenizer": {
                    "model": "tokenizer_tiny",
                    "num_tokens": 32,
                    "quantizer": {"kind": "round", "round": {"levels": 64}},
                    "train": {"steps": 1, "batch_size": 2},
                },
                "encode": {"batch_size": 2},
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "lab"), str(ROOT)])}
    final, tokens = tmp_path / "tok" / "final.pt", tmp_path / "train.h5"
    for step, *args in (
        ("make_dataset",),
        ("train_tokenizer", "--schedule", "r", "--out", final),
        ("encode_tokens", "--schedule", "r", "--tokenizer", final, "--split", "train"),
    ):
        if step == "encode_tokens":
            args += ["--out", tokens]
        r = subprocess.run(
            [sys.executable, f"pipeline_steps/{step}.py", "--config", cfg_path, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"{step}: {r.stderr[-2000:]}"
    assert "round" not in base.quantizer_kinds()  # this process never imported the plugin
    with TokenStore(tokens) as store:
        assert store.num_rows == 4
