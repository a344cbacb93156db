"""The command-line wrapper every entry point shares (src/cli.py)."""

from __future__ import annotations

import pytest

from tests.test_bad_inputs import run_command


@pytest.mark.parametrize("module", ["src.run", "src.eval", "src.predict"])
def test_help_lists_the_users_groups_and_not_the_internal_schemas(module, capsys):
    result = run_command(module, ["--help"], capsys)
    assert result.code == 0, result.err
    assert "== Configuration groups ==" in result.out
    assert "schema/" not in result.out
