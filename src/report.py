"""`python -m src.report <sweep dir> [--baseline model.heads=4]`: the report of a sweep (src/sweep/report.py).

The command stays here, with the names other modules import from it (src.run's sweep-end callback, src.analyze's
report after analysing a sweep); what the report reads, computes and writes is in the sweep package, src/sweep/.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: Ctrl-C during the imports below is one line (src/cli/startup.py)
    from src.cli.startup import quiet_until_started

    quiet_until_started()

from src.sweep.report import (
    ReportAtSweepEnd,
    Sweep,
    analyse,
    main,
    report_after_sweeper_error,
    report_sweep,
    write_report,
)
from src.sweep.statistics import decimals_for, mean_cell, setting_cell, t_interval, welch_p
from src.sweep.statistics import format_number as _format

__all__ = [
    "ReportAtSweepEnd",
    "Sweep",
    "_format",
    "analyse",
    "decimals_for",
    "main",
    "mean_cell",
    "report_after_sweeper_error",
    "report_sweep",
    "setting_cell",
    "t_interval",
    "welch_p",
    "write_report",
]

if __name__ == "__main__":
    main()
