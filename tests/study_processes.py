"""What a sweep's process does with its study, for the tests that start several at once (tests/test_study.py). A
module of its own, so that each process it runs in imports Optuna and src/study.py alone (about 2 s), not the test
modules' Hydra and Lightning (about 11 s: four processes cost 45 s of CPU)."""

from __future__ import annotations


def open_together(url: str, name: str, search, ready, results) -> None:
    """One 'sweep': once every process has imported what it needs (`ready`, a barrier), opens the study `name` of
    `search` as the sweeper does before its first trial, and puts "ok" or its error in `results`."""
    try:
        from src.study import open_study

        ready.wait(120)
        open_study(url, name, search)
        results.put("ok")
    except BaseException as error:  # reported to the test, whatever it is
        results.put(f"{type(error).__name__}: {error}")
