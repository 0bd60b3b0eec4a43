"""The error type for bad user input, reported as one line instead of a traceback."""

from hydra.errors import InstantiationException
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue


class ConfigError(ValueError):
    """Bad input the user can fix; the message says what was wrong and how to fix it."""


# How OmegaConf words an exception raised inside a resolver; it keeps only this message.
RAISED_IN_RESOLVER = f"{ConfigError.__name__} raised while resolving interpolation: "


def user_error_in(exc: BaseException | None) -> ConfigError | None:
    """Return the ConfigError behind exc (also when Hydra's instantiate or a config resolver
    wrapped it), else None."""
    while exc is not None:
        if isinstance(exc, ConfigError):
            return exc
        if isinstance(exc, MissingMandatoryValue):
            key = exc.full_key or "a required value"
            return ConfigError(f"{key} is required (it is ??? in the config): pass {key}=...")
        if isinstance(exc, InterpolationResolutionError) and str(exc).startswith(
            RAISED_IN_RESOLVER
        ):
            message = str(exc).removeprefix(RAISED_IN_RESOLVER).splitlines()[0]
            return ConfigError(message)
        if not isinstance(exc, InstantiationException | InterpolationResolutionError):
            return None
        exc = exc.__cause__
    return None


def one_line_reason(exc: BaseException) -> str:
    """One line saying why a run stopped with this exception."""
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return "interrupted"
    error = user_error_in(exc)
    text = next(iter(str(error or exc).strip().splitlines()), "")
    if error is not None:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
