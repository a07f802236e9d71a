"""vcq.report.figures and plot_figures: Fig. 2 as the paper draws it, sample grids (random distinct
classes and per class), the run's curves, and all files or none."""

import numpy as np
import pandas as pd
import pytest
from paper import IMAGENET_N, PAPER, table2_schedules
from report_runfiles import FIGURE_INPUTS, args, recon_record, run_files, step

from vcq.report import figures
from vcq.runfiles import Samples


def imagenet_cfg():
    return {
        "experiment": "x",
        "schedules": table2_schedules("constant16384", "cosine"),
        "tokenizer": {"num_tokens": 256, "model": {"image_size": 256}},
        "report": {"n_images": IMAGENET_N},
    }


def test_fig2_draws_the_papers_remaining_budget_beside_the_per_position_view(
    tmp_path, monkeypatch, figure_pixels
):
    drawn = []
    from matplotlib.axes import Axes

    real_plot = Axes.plot

    def plot(self, *a, **kw):
        drawn.append((self.get_subplotspec().colspan.start, kw.get("label"), a))
        return real_plot(self, *a, **kw)

    monkeypatch.setattr(Axes, "plot", plot)
    ent = pd.DataFrame({"t": range(20), "cond_entropy_bits": np.linspace(10, 0, 20)})
    paths = figures.plot_schedules(
        imagenet_cfg(), tmp_path / "fig2", {"cosine": ent}, PAPER["fig2a_language"]
    )
    for p in paths:  # figsize 17 x 4.8 in at 150 dpi
        figure_pixels(p, (2550, 720))
    panel_a = {label: a for col, label, a in drawn if col == 0}
    # (a) remaining budget log2 N - I(t): the constant 16384 exhausts 20.3 bits at t = 2
    constant = panel_a["constant16384"][1]
    assert constant[0] == pytest.approx(np.log2(IMAGENET_N)) and constant[2] == 0
    assert any(label.startswith("power, K_min = 16") for label in panel_a)
    language = next(a for label, a in panel_a.items() if label.startswith("language"))
    printed = PAPER["fig2a_language"]
    assert list(language[:2]) == [[0, printed["t_star"]], [printed["budget_bits"], 0]]
    assert {label for col, label, _ in drawn if col == 1} >= {
        "cosine (theory)",
        "cosine (measured H)",
    }


def test_usage_figure_from_recon_records(tmp_path, figure_pixels):
    usage = [
        {"t": t, "k_t": 2 ** (t + 1), "used": t + 1, "utilization": (t + 1) / 2 ** (t + 1)}
        for t in range(6)
    ]
    paths = figures.plot_usage(
        {"cosine": recon_record("cosine", 20.0, 1.0, usage_per_position=usage)}, tmp_path / "u"
    )
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    for p in paths:  # figsize 11 x 4 in at 150 dpi
        figure_pixels(p, (1650, 600))


def test_line_figures(tmp_path, figure_pixels):
    loss = pd.DataFrame(
        {"t": range(8), "train_loss": np.linspace(5, 1, 8), "val_loss": np.linspace(6, 2, 8)}
    )
    log = pd.DataFrame({"step": range(5), "loss": 3.0 / np.arange(1, 6)})
    for series, x, ys in (
        ({"cosine": loss}, "t", ["train_loss", "val_loss"]),
        ({"ar": log}, "step", ["loss"]),
    ):
        paths = figures.plot_lines(series, x, ys, tmp_path / x, "x", "y")
        for p in paths:  # figsize 6 x 4 in at 150 dpi
            figure_pixels(p, (900, 600))


def test_per_class_grid_rows_are_classes(tmp_path, monkeypatch):
    shown = {}
    monkeypatch.setattr(
        figures,
        "_image_figure",
        lambda grid, out, title, ticks, names, *a: shown.update(
            grid=grid, names=names, title=title
        ),
    )
    images = np.zeros((6, 2, 2, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(6)
    samples = Samples("cosine", "p", images, np.array([1, 0, 1, 0, 2, 2]))
    figures.sample_grid(
        samples, tmp_path / "g.png", per_row=2, class_names=["a", "b", "c"], title="demo"
    )
    assert shown["names"] == ["a", "b", "c"] and shown["title"] == "demo"
    assert shown["grid"][0::2, 0::2, 0].tolist() == [[1, 3], [0, 2], [4, 5]]


def test_mosaic_shows_one_sample_each_of_random_distinct_classes(tmp_path, figure_pixels):
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(100), 3))
    picks = figures.mosaic_picks(labels, 32, seed=0)
    shown = labels[picks].tolist()
    assert len(shown) == len(set(shown)) == 32  # distinct classes
    assert shown != sorted(shown) and max(shown) > 32  # drawn at random, not the first 32
    assert figures.mosaic_picks(labels, 32, seed=0).tolist() == picks.tolist()  # seeded
    assert sorted(labels[figures.mosaic_picks(labels[:30], 32, seed=0)]) == sorted(set(labels[:30]))
    images = np.zeros((300, 4, 4, 3), np.uint8)
    png = figures.sample_mosaic(Samples("c", "p", images, labels), tmp_path / "m.png", title="t")
    figure_pixels(png)


def test_reconstruction_figure_and_loss_panels(tmp_path, figure_pixels):
    originals = np.random.default_rng(0).integers(0, 255, (6, 4, 4, 3), dtype=np.uint8)
    png = figures.plot_reconstructions(
        originals,
        {"cosine": originals[::-1]},
        np.array([0, 0, 1, 1, 2, 2]),
        tmp_path / "r.png",
        ["a", "b", "c"],
        "title",
        row_notes={"cosine": "(PSNR 9 dB)"},
    )
    figure_pixels(png)
    log = pd.DataFrame(
        {"step": range(5), "l1": 1 / np.arange(1, 6), "quant": 1e-5 * 10.0 ** np.arange(5)}
    )
    panels = [
        {"keys": ["l1"], "ylabel": "L1", "caption": "c1"},
        {"keys": ["quant"], "ylabel": "q", "caption": "c2"},
        {"keys": ["lpips"], "ylabel": "LPIPS", "caption": "absent"},
    ]
    paths = figures.plot_panels({"cosine": log}, panels, tmp_path / "curves", "title")
    for p in paths:
        figure_pixels(p)
    with pytest.raises(ValueError, match="no curves"):
        figures.plot_panels({"cosine": log}, panels[2:], tmp_path / "none", "title")


def test_figures_name_schedules_from_file_content_not_order_and_write_all_or_nothing(tmp_path):
    files, settings = run_files(tmp_path / "run")
    pngs = {}
    for name, order in (("config_order", lambda x: x), ("shuffled", lambda x: x[::-1])):
        out = tmp_path / name
        r = step(
            "plot_figures.py", *settings, "--out-dir", str(out), *args(files, FIGURE_INPUTS, order)
        )
        assert r.returncode == 0, r.stderr[-2000:]
        pngs[name] = {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}
        # every PNG has its report caption beside it
        assert {p.stem for p in out.glob("*.rst")} == {p.stem for p in out.glob("*.png")}
    # curves, two grids per (schedule, preset): random classes and per class, reconstructions
    assert len(pngs["shuffled"]) == 5 + 2 * 8 + 1
    assert pngs["config_order"] == pngs["shuffled"]
    files["--samples"].pop()
    out = tmp_path / "failed"
    r = step("plot_figures.py", *settings, "--out-dir", str(out), *args(files, FIGURE_INPUTS))
    assert r.stderr.splitlines()[-1] == (
        "error: no sample file for schedule 'cosine', preset 'cbcfg' (rule sample)"
    )
    # the curves plotted before the failure were not left behind
    assert list(out.iterdir()) == [] and not list(tmp_path.glob(".failed*"))
