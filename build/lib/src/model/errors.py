"""The one error type of the model package."""


class ConfigError(ValueError):
    """A configuration that cannot work; the message is one line naming the field and the fix."""
