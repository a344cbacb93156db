"""The model package's error type, and its warning category."""


class ConfigError(ValueError):
    """A configuration that cannot work; the message is one line naming the field and the fix."""


class ModelWarning(UserWarning):
    """Legal settings that do something surprising (mask=none: the decoder sees the future). The model package
    only warns (warnings.warn); the commands print each as one `warning:` line (src/training/report.py)."""
