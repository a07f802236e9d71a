"""The one plotting setup: Agg backend chosen on use, not on import; the image-grid writer."""

import subprocess
import sys

import numpy as np
from PIL import Image

from vcq.plotting import image_grid, pyplot, save_figure, save_image_grid


def test_importing_the_library_chooses_no_backend():
    code = "import sys, vcq.plotting, vcq.report, vcq.entropy; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_grid_tiles_row_major_and_leaves_missing_cells_black(tmp_path):
    images = np.stack([np.full((2, 3, 3), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = image_grid(images, ncol=2)
    assert grid.shape == (3 * 2, 2 * 3, 3)
    assert (
        grid[0, 0, 0] == 10 and grid[0, 3, 0] == 20 and grid[2, 0, 0] == 30 and grid[4, 0, 0] == 50
    )
    assert not grid[4:, 3:].any()
    path = save_image_grid(tmp_path / "g.png", images, ncol=2)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), grid)


def test_figures_are_written_in_each_format_and_closed(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = save_figure(fig, [tmp_path / "f.png", tmp_path / "f.pdf"])
    assert [p.read_bytes()[:4] for p in paths] == [b"\x89PNG", b"%PDF"]
    assert not plt.fignum_exists(fig.number) and plt.get_backend().lower() == "agg"
