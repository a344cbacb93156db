"""The commands' boundary with the user: everything between what a user types and the first piece of work.

- `schema.py`: the Hydra schemas (structured configs) of every group and setting, registered in the ConfigStore.
- `composition.py`: Hydra's composition made cheaper (what it repeats at every composition, done once a process).
- `command_line.py`: what the commands share: Hydra's errors rewritten as one `error:` line with its fix, the
  command line checked before Hydra starts, `--help`, and `run_hydra_command`, which every command runs through.
- `validation.py`: the values that must agree (`validate_config`) and the data files' first part (`check_data`).
- `preflight.py`: the Hydra callback that checks a run or a whole sweep before Hydra writes anything.
- `free_text.py`: text settings (a prompt, a task prefix) kept exactly as typed.
- `startup.py` and `scripts.py`: Ctrl-C while a command is still importing is one line, for `python -m` and for
  the console scripts.

A refusal anywhere here is one line, exit status 2, and nothing written.
"""
