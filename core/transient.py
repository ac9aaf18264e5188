"""Which errors are worth a retry: transient MLflow, database and network failures.

Prefect tasks use `is_transient_error` as their `retry_condition_fn` predicate (through
`tasks.retry_policy`). Data errors and every other `SmlError` a person must act on are
never transient.
"""

from __future__ import annotations

_TRANSIENT_MLFLOW_CODES = frozenset(
    {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "ABORTED"}
)
_TRANSIENT_MESSAGES = (
    "database is locked",
    "could not connect",
    "connection refused",
    "connection reset",
    "server closed the connection",
    "timed out",
    "temporarily unavailable",
    "too many connections",
)


def is_transient_error(exc: BaseException) -> bool:
    """True for failures a retry may cure: lost connections, locks, timeouts, 5xx/429.

    False for `DataError` and other `SmlError`s except `SourceUnavailableError`, and for
    anything not recognised (unknown errors are not retried blindly).
    """
    from core.errors import SmlError

    if isinstance(exc, SmlError):
        return type(exc).__name__ == "SourceUnavailableError"
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    module = type(exc).__module__
    if module.startswith("sqlalchemy"):
        from sqlalchemy.exc import DBAPIError, OperationalError
        from sqlalchemy.exc import TimeoutError as PoolTimeoutError

        if isinstance(exc, OperationalError | PoolTimeoutError):
            return True
        return bool(isinstance(exc, DBAPIError) and exc.connection_invalidated)
    if module.startswith(("requests", "urllib3", "httpx")):
        return "ConnectionError" in type(exc).__name__ or "Timeout" in type(exc).__name__
    if module.startswith("mlflow"):
        code = str(getattr(exc, "error_code", ""))
        if code in _TRANSIENT_MLFLOW_CODES:
            return True
        message = str(exc).lower()
        return any(marker in message for marker in _TRANSIENT_MESSAGES)
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient_error(cause)
