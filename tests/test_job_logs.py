"""Job logs stay readable: a progress bar written to a log file is a line every 5 %."""

import io

from vcq.training import Progress


def test_a_bar_in_a_log_file_is_a_line_every_five_percent():
    log = io.StringIO()
    bar = Progress(total=1000, file=log, lines=True, desc="train")
    for step in range(1000):
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=1.0 / (step + 1))
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert 20 <= len([x for x in lines if x]) <= 23, lines
    assert lines[-1].startswith("train: 100%") or lines[-2].startswith("train: 100%")
