"""The sweep report's figures (src/sweep/figures.py): what each draws stays inside the figure, and the report's
TensorBoard copy is the latest report only."""

from __future__ import annotations

from pathlib import Path

from src.dashboard import read_events
from src.sweep.figures import draw_figures, written_by_the_report
from src.sweep.report import analyse, write_report
from tests.test_report import MAIN, fake_run


def two_configurations(sweep: Path) -> Path:
    """model.heads 1 and 2 over two seeds: bars.png is as narrow as it gets (two bars)."""
    for number, (heads, seed, value) in enumerate([(1, 0, 0.5), (1, 1, 0.6), (2, 0, 0.8), (2, 1, 0.9)]):
        fake_run(sweep, number, [f"model.heads={heads}", f"seed={seed}"], final={MAIN: value, "val/loss": 1 - value})
    return sweep


def test_every_title_is_inside_its_figure(tmp_path):
    """bars.png's title ran off its right edge, cut off at `(as in the tab`."""
    figures = draw_figures(analyse(two_configurations(tmp_path)))
    assert {"bars", "curves"} <= set(figures)
    for name, fig in figures.items():
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            box = ax.title.get_window_extent(renderer)
            assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (name, ax.title.get_text())
    title = figures["bars"].axes[0].title.get_text()
    assert " ".join(title.split()) == f"{MAIN}: mean and 95% interval over seeds (as in the table)"  # wrapped, whole


def test_the_tensorboard_copy_is_the_latest_report_only(tmp_path):
    """Each rewrite added an events file at step 0 beside the earlier ones: TensorBoard then showed two
    report/table texts at step 0, the first a stale one. An events file that is not the report's stays."""
    from torch.utils.tensorboard import SummaryWriter

    sweep = two_configurations(tmp_path)
    metrics = sweep / "1_model.heads:1+seed:1" / "metrics.json"
    written = metrics.read_text()
    metrics.unlink()  # not there yet: 3 of 4 completed
    write_report(sweep)
    with SummaryWriter(log_dir=str(sweep / "report")) as writer:  # someone's own, in the report's folder
        writer.add_text("notes/mine", "keep me", global_step=0)
    metrics.write_text(written)
    write_report(sweep)
    write_report(sweep)
    events = read_events(sweep / "report")
    ((step, text),) = events.texts["report/table"]
    assert step == 0 and "4 of 4 runs completed" in text
    assert events.texts["notes/mine"] == [(0, "keep me")]
    files = sorted((sweep / "report").glob("events.out.tfevents.*"))
    assert [written_by_the_report(path) for path in files].count(True) == 1 and len(files) == 2
