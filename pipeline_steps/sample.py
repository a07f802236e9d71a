"""Generate class-conditional samples for one preset, in a seeded random class order, as one
ADM-style .npz (images, labels, tokens)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vcq import cluster, preempt
from vcq.ar import load_ar
from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.images import to_uint8_nhwc
from vcq.io import atomic_path, content_key, file_sha256, keyed_dir
from vcq.numerics import check_finite_weights, inference_autocast
from vcq.paths import Layout
from vcq.runfiles import write_samples
from vcq.sampling import find_preset, generate, run_settings, sample_labels
from vcq.train.distributed import init_distributed
from vcq.train.log import progress


def main() -> None:
    p = step_parser(__doc__)
    p.add_argument("--schedule", required=True, help="codebook schedule name (K_t of the AR model)")
    p.add_argument("--preset", required=True, help="sampling preset name (sampling.presets)")
    p.add_argument("--ar", required=True, help="AR model (vcq.ar.save_ar)")
    p.add_argument("--tokenizer", required=True, help="tokenizer (vcq.tokenizer.save_tokenizer)")
    p.add_argument("--out", required=True, help="output .npz (images, labels and tokens)")
    args = p.parse_args()
    cfg = load_step_config(args)
    sampling_cfg = cfg["sampling"]
    preset = find_preset(sampling_cfg, args.preset)
    log = setup_logging()
    cluster.claim(args.out, f"sample {args.schedule} {args.preset} for {cfg['experiment']}")
    preempt.install()
    device = init_distributed(cfg["device"]).device

    from vcq.tokenizer import load_tokenizer

    model, extra = load_ar(args.ar, map_location=device)
    tok = load_tokenizer(args.tokenizer, map_location=device).eval()
    check_finite_weights(model, args.ar)
    check_finite_weights(tok, args.tokenizer)
    k_sizes = np.asarray(extra["k_sizes"])
    out = Path(args.out)
    # Finished chunks are reused only if the same models, preset and settings made them.
    key = content_key(
        ar=file_sha256(args.ar),
        tokenizer=file_sha256(args.tokenizer),
        preset=preset,
        sampling=run_settings(sampling_cfg),
    )
    chunk_dir = keyed_dir(Layout.sample_chunks(out), key)
    labels = sample_labels(
        model.cfg.num_classes, sampling_cfg["samples_per_class"], sampling_cfg["seed"]
    )
    n, cs = len(labels), sampling_cfg["chunk_size"]
    n_chunks = -(-n // cs)
    log.info("preset %s: %d samples in %d chunks", preset, n, n_chunks)

    bar = progress(n, desc=f"sample {args.schedule} {args.preset}")
    for c in range(n_chunks):
        files = [Layout.sample_chunk(chunk_dir, c, k) for k in ("img", "tok")]
        lab = labels[c * cs : (c + 1) * cs]
        if all(f.exists() for f in files):  # resumable: finished chunks are kept
            bar.update(len(lab))
            continue
        gen = torch.Generator(device).manual_seed(sampling_cfg["seed"] + c)
        imgs, toks = [], []
        for s in range(0, len(lab), sampling_cfg["batch_size"]):
            y = torch.from_numpy(lab[s : s + sampling_cfg["batch_size"]]).to(device)
            with torch.no_grad(), inference_autocast(device):
                t = generate(model, y, k_sizes, preset, gen)
                imgs.append(to_uint8_nhwc(tok.decode_indices(t)))
            toks.append(t.cpu().numpy().astype(np.int32))
            bar.update(len(y))
        for f, arr in zip(files[::-1], (np.concatenate(toks), np.concatenate(imgs)), strict=True):
            with atomic_path(f) as tmp, open(tmp, "wb") as fh:
                np.save(fh, arr)
        if preempt.stop_requested(device) and c < n_chunks - 1:
            bar.close()
            preempt.end_slice(f"sample {args.schedule} {args.preset} after chunk {c}", log)
    bar.close()

    img_chunks = [Layout.sample_chunk(chunk_dir, c, "img") for c in range(n_chunks)]
    tok_chunks = [Layout.sample_chunk(chunk_dir, c, "tok") for c in range(n_chunks)]
    # one file, written atomically: nothing stands beside it that looks complete after a failure
    write_samples(out, args.schedule, args.preset, img_chunks, labels, tok_chunks)
    log.info("wrote %s (%d images %s)", out, n, np.load(img_chunks[0], mmap_mode="r").shape[1:])


if __name__ == "__main__":
    run_step(main)
