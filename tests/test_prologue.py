"""Prologue tokens: trained only through the AR loss, sampled first, resumable like the AR model."""

import numpy as np
import torch
import torch.nn.functional as F

from vcq.ar import ARConfig, ARModel, load_ar, save_ar
from vcq.sampling import generate
from vcq.tokenizer import Tokenizer, TokenizerConfig

SIZES = np.array([4, 8, 16, 16])


def tokenizer(k_sizes) -> Tokenizer:
    """A 16 px, width-16 tokenizer for the given K_t."""
    return Tokenizer(
        TokenizerConfig(
            image_size=16,
            patch_size=8,
            enc_width=16,
            enc_depth=1,
            enc_heads=2,
            dec_width=16,
            dec_depth=1,
            dec_heads=2,
            k_sizes=list(k_sizes),
            quantizer={"kind": "vcq", "vcq": {"code_dim": 4}},
        )
    )


def tiny(p=2, kp=4):
    torch.manual_seed(0)
    prologue = {"num_tokens": p, "codebook_size": kp, "width": 16, "depth": 1, "heads": 2}
    return ARModel(
        ARConfig(
            vocab_size=16,
            seq_len=4,
            num_classes=3,
            n_layer=1,
            n_head=2,
            dim=16,
            ffn_multiple=8,
            dropout=0.0,
            token_dropout=0.0,
            class_dropout=0.0,
            prologue=prologue,
        )
    )


def test_visual_token_loss_alone_trains_the_prologue_encoder_and_codebook():
    net = tiny()
    tokens = torch.randint(0, 4, (6, 4))
    out = net(tokens, torch.zeros(6, dtype=torch.long))
    assert out.logits.shape == (6, 4, 16) and out.ce.shape == (6, 4)
    F.cross_entropy(out.logits.transpose(1, 2), tokens).backward()
    for name, p in net.prologue.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_prologue_loss_joins_the_models_loss():
    # one loss path: the loop calls the model and logs its terms, with no prologue case of its own
    net = tiny()
    tokens, labels = torch.randint(0, 4, (6, 4)), torch.zeros(6, dtype=torch.long)
    out = net(tokens, labels)
    ids, emb = net.prologue(tokens)
    x = net.embed(labels, tokens[:, :-1], emb)
    head = net.forward_embeds(x)
    assert torch.allclose(out.logits, head[:, 2:])
    pro = F.cross_entropy(head[:, :2, :4].flatten(0, 1), ids.flatten())
    assert torch.allclose(out.terms["prologue_loss"], pro)
    assert torch.allclose(out.loss, out.ce.mean() + pro)


def test_prologue_is_not_part_of_the_tokenizer():
    # reconstruction never reaches it: the tokenizer has no prologue parameters at all
    tok = tokenizer(SIZES)
    assert not any("prologue" in n for n, _ in tok.named_parameters())


def test_generation_samples_the_prologue_first_and_returns_visual_tokens_within_k_t():
    net = tiny().eval()
    labels = torch.arange(3)
    preset = {"guidance": "codebook-aware", "scale": 2.0, "power": None, "temperature": 1.0}
    a = generate(net, labels, SIZES, preset, torch.Generator().manual_seed(1))
    b = generate(net, labels, SIZES, preset, torch.Generator().manual_seed(1))
    assert a.shape == (3, 4) and torch.equal(a, b)
    assert bool((a < torch.as_tensor(SIZES)).all())


def test_train_ar_with_prologue_resumes_bit_for_bit_and_saves_it(train_ar_step, tmp_path):
    step = train_ar_step
    cfg = step.config(4)
    cfg.write_text(
        cfg.read_text().replace("ar:\n", "ar:\n  prologue: {num_tokens: 2, codebook_size: 4}\n")
    )
    step.run(cfg, tmp_path / "a" / "final.pt")
    step.run(cfg, tmp_path / "b" / "final.pt", "--stop-after", "2")
    step.run(cfg, tmp_path / "b" / "final.pt")
    assert step.losses(tmp_path / "a" / "final.pt") == step.losses(tmp_path / "b" / "final.pt")
    model, extra = load_ar(tmp_path / "a" / "final.pt")
    assert model.prologue is not None and model.prologue.num_tokens == 2 and "prologue" not in extra


def test_ar_checkpoints_with_the_prologue_in_extra_still_load(tmp_path):
    # before the prologue was part of the model, its options and weights rode in `extra`
    from vcq.train.checkpoint import load_checkpoint, save_checkpoint

    net = tiny().eval()
    save_ar(tmp_path / "new.pt", net, net.cfg, {"k_sizes": SIZES.tolist()})
    blob = load_checkpoint(tmp_path / "new.pt")
    config = {k: v for k, v in blob["config"].items() if k not in ("prologue", "k_sizes")}
    state = {k: v for k, v in blob["state_dict"].items() if not k.startswith("prologue.")}
    pro_state = {k[9:]: v for k, v in blob["state_dict"].items() if k.startswith("prologue.")}
    pro_cfg = {**net.cfg.prologue, "vocab": 16, "seq_len": 4, "ar_dim": 16}
    extra = {**blob["extra"], "prologue": {"config": pro_cfg, "state_dict": pro_state}}
    save_checkpoint(tmp_path / "old.pt", {"config": config, "state_dict": state, "extra": extra})
    old, old_extra = load_ar(tmp_path / "old.pt")
    assert old_extra == {"k_sizes": SIZES.tolist()}
    tokens, labels = torch.randint(0, 4, (3, 4)), torch.arange(3)
    assert torch.equal(old(tokens, labels).loss, net(tokens, labels).loss)


def test_linear_probe_adds_a_prologue_row_from_the_ar_checkpoint(
    train_ar_step, run_python, tmp_path
):
    import json

    cfg = train_ar_step.config(3)
    cfg.write_text(
        cfg.read_text().replace("ar:\n", "ar:\n  prologue: {num_tokens: 2, codebook_size: 4}\n")
        + "probe: {k: [4], epochs: 2}\n"
    )
    from vcq.io import file_sha256
    from vcq.tokenizer import save_tokenizer

    tok = tokenizer([16] * 16)
    save_tokenizer(tmp_path / "tok.pt", tok, {})
    # The probe checks that the token files were encoded by this tokenizer.
    train_ar_step.write_tokens(tmp_path / "train.h5", 64, 0, sha=file_sha256(tmp_path / "tok.pt"))
    train_ar_step.write_tokens(tmp_path / "val.h5", 32, 1, sha=file_sha256(tmp_path / "tok.pt"))
    train_ar_step.run(cfg, tmp_path / "a" / "final.pt")
    out = tmp_path / "probe.json"
    r = run_python(
        "pipeline_steps/linear_probe.py",
        *("--config", cfg, "--schedule", "c", "--tokenizer", tmp_path / "tok.pt"),
        *("--train-tokens", tmp_path / "train.h5", "--val-tokens", tmp_path / "val.h5"),
        *("--ar", tmp_path / "a" / "final.pt", "--out", out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["features"] for r in rows] == ["codes", "prologue"] and rows[1]["k"] == 2


def test_prologue_tokens_get_their_own_guidance_scale(monkeypatch):
    import vcq.sampling as sampling

    used = []
    real = sampling.cfg_logits
    monkeypatch.setattr(sampling, "cfg_logits", lambda c, u, s: used.append(s) or real(c, u, s))
    net = tiny(p=2).eval()
    preset = {"guidance": "constant", "scale": 3.0, "temperature": 1.0}
    generate(net, torch.arange(3), SIZES, {**preset, "prologue_scale": 0.5})
    assert used == [0.5, 0.5, 3.0, 3.0, 3.0, 3.0]
    used.clear()
    generate(net, torch.arange(3), SIZES, preset)
    assert used == [3.0] * 6
