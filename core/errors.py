"""Domain errors: each carries a message meant for a person, printed as one line."""


class SmlError(Exception):
    """Base of every error the CLI and flows report as one clear line (no traceback)."""


class NotFoundError(SmlError):
    """A named thing (env, tag, model version, rollout) does not exist."""


class ConflictError(SmlError):
    """The action conflicts with the current state (another operator got there first)."""


class DataError(SmlError):
    """Input data is unusable (empty, one class, unknown labels, bad schema)."""


class StateNotReadyError(ConflictError):
    """A model version's release state is not built yet, so it can take no traffic."""
