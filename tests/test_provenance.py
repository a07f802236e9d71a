"""results/<exp>/provenance.json: per table and figure, the config hash, the hashes of the files
it was made from and the code version."""

import json
from pathlib import Path

import torch

from vcq.config import dump_config, load_config
from vcq.io import file_sha256, read_json

REPO = Path(__file__).resolve().parent.parent


def test_provenance_names_config_inputs_and_code_of_every_output(tmp_path, run_step):
    config = tmp_path / "config" / "abc.yaml"
    config.parent.mkdir()
    config.write_text(dump_config(load_config(REPO / "config/default.yaml")))
    files = {name: tmp_path / name for name in ("recon.json", "gen.json", "final.pt")}
    for i, f in enumerate(files.values()):
        f.write_bytes(bytes([i]) * 10)
    products = [
        {
            "rule": "tables",
            "outputs": ["t/table4.md", "t/table4.csv"],
            "inputs": [str(files["recon.json"]), str(files["gen.json"])],
        },
        {
            "rule": "figures",
            "outputs": ["f/samples.png"],
            "inputs": [str(files["final.pt"]), str(files["gen.json"])],
        },
    ]
    out = tmp_path / "provenance.json"
    run_step(
        "write_provenance", "--config", config, "--products", json.dumps(products), "--out", out
    )
    record = read_json(out)
    assert record["config"] == {"path": str(config), "sha256": file_sha256(config)}
    assert set(record["outputs"]) == {"t/table4.md", "t/table4.csv", "f/samples.png"}
    figure = record["outputs"]["f/samples.png"]
    assert figure["rule"] == "figures"
    assert figure["inputs"] == {
        str(f): file_sha256(f) for f in (files["final.pt"], files["gen.json"])
    }
    assert record["outputs"]["t/table4.md"]["inputs"][str(files["gen.json"])] == file_sha256(
        files["gen.json"]
    )
    # the code version: this checkout's commit (or the package version outside a checkout)
    assert record["code"]["package"] and len(record["code"].get("git_commit", "0" * 40)) == 40
    env = record["environment"]
    assert env["torch"] == torch.__version__ and env["cpu_model"] and env["torch_threads"] >= 1
    assert len(env["lock"]["sha256"]) == 64 and isinstance(env["lock"]["drift"], list)
