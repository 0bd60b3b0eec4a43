"""The error type for bad user input, reported as one line instead of a traceback."""

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue


class ConfigError(ValueError):
    """Bad input the user can fix; the message says what was wrong and how to fix it."""


def user_error_in(exc: BaseException) -> ConfigError | None:
    """Return the ConfigError behind exc (also when Hydra's instantiate wrapped it), else None."""
    while exc is not None:
        if isinstance(exc, ConfigError):
            return exc
        if isinstance(exc, MissingMandatoryValue):
            key = exc.full_key or "a required value"
            return ConfigError(f"{key} is required (it is ??? in the config): pass {key}=...")
        if not isinstance(exc, InstantiationException):
            return None
        exc = exc.__cause__
    return None
