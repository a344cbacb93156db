"""The project's Optuna sweeper, under the name Hydra looks for: Hydra instantiates a sweeper only from a module of
the `hydra_plugins` package. Hydra's Optuna sweeper runs `n_trials` trials in every process; this one runs
`n_trials` in all, shared by every sweep of the same stored study (see src/study.py, where its loop lives).
Selected by the hparams_search configs: hydra.sweeper._target_=hydra_plugins.transformer_ablations.optuna_sweeper.
SharedStudySweeper.

Hydra imports every module of the package when it starts, whatever the command: this one imports nothing heavy,
and offers no sweeper when the optuna extra is not installed.
"""

from __future__ import annotations

from typing import Any

try:
    from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper  # the module: Hydra would register its class here
except ImportError:  # pip install -e '.[optuna]' adds it
    optuna_sweeper = None

if optuna_sweeper is not None:

    class SharedStudySweeper(optuna_sweeper.OptunaSweeper):
        """Hydra's Optuna sweeper (its settings, its parsing of the search space), with src.study's loop."""

        def sweep(self, arguments: list[str]) -> Any:
            from src.study import sweep

            return sweep(self.sweeper, arguments)
