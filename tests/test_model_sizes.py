"""The model-size step prints Table 3's comparison for the paper configs (the paper's counts from
config/paper_numbers.yaml)."""

from paper import PAPER


def test_base_config_sizes_match_table3_within_tolerance(run_python):
    r = run_python("pipeline_steps/model_sizes.py", "--config", "config/imagenet/base.yaml")
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stderr
    paper = {name: f"{n / 1e6:.0f}M" for name, n in PAPER["table3"].items()}
    tok = f"tokenizer tokenizer_base (Kmax 16384, L 256): 172.42M (paper {paper['tokenizer_base']}"
    assert f"{tok}, +0.2%)" in out
    assert f"AR ar_b (Kmax 16384, L 256): 110.89M (paper {paper['ar_b']}, -3.6%)" in out
