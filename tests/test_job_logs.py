"""Job logs stay readable: a progress bar written to a log file is a line every 5 %, and a
training log read back has each step once however often a resumed run wrote it."""

import io

from vcq.train.log import Progress


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


def test_read_log_takes_each_step_once_the_latest_write_winning(tmp_path):
    from vcq.runfiles import read_log

    log = tmp_path / "train_log.jsonl"
    steps = [(25, 1.0), (50, 0.9), (75, 0.8), (50, 0.7), (75, 0.6), (100, 0.5)]  # resumed at 25
    log.write_text("".join(f'{{"schedule": "c", "step": {s}, "l1": {v}}}\n' for s, v in steps))
    schedule, frame = read_log(log, "train_tokenizer")
    assert schedule == "c"
    assert frame["step"].tolist() == [25, 50, 75, 100]
    assert frame["l1"].tolist() == [1.0, 0.7, 0.6, 0.5]
