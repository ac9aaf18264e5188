"""Settings: the one source of env-dependent values (see config/settings.py)."""

from config.settings import (
    PUBLIC_FIELDS,
    SECRET_FIELDS,
    ConfigError,
    Settings,
    get_settings,
    load_settings,
    masked_items,
)

__all__ = [
    "PUBLIC_FIELDS",
    "SECRET_FIELDS",
    "ConfigError",
    "Settings",
    "get_settings",
    "load_settings",
    "masked_items",
]
