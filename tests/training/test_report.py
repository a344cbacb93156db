"""src/training/report.py: what the commands print besides their results."""

from __future__ import annotations

import warnings

from src.model import ModelWarning, build_model, masks
from src.training.report import show_model_warnings_as_lines
from tests.model.test_transformer import small_config, small_mask


def test_the_model_s_warnings_are_one_warning_line_each_and_others_stay_python_s(capsys, monkeypatch):
    """mask=none's leak is a legal ablation: the model package warns (ModelWarning) and a command says it as one
    `warning:` line, as it says every warning; a warning of anyone else's keeps Python's form."""
    monkeypatch.setattr(masks, "_warned", set())  # said once per process: maybe already, by another test
    passed_on = []
    with warnings.catch_warnings():  # the hooks set here are undone when the block ends
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *rest, **kw: passed_on.append(str(message))  # Python's, standing in
        show_model_warnings_as_lines()
        build_model(small_config(mask=small_mask("none")))
        warnings.warn("another library's", UserWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: mask=none: the decoder has no look-ahead mask"), err
    assert passed_on == ["another library's"]
    assert issubclass(ModelWarning, UserWarning)  # filters written for UserWarning still see it
