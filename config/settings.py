"""The one source of env-dependent values.

Settings are read from the process environment first, then from a `.env` file in the
working directory (path overridable with `SML_ENV_FILE`), then from embedded defaults that
make a laptop work with no server (SQLite and a local MLflow store under `.local/`).

Nothing here has a side effect at import: no folder is created, no connection opened.
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from importlib import metadata
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from core.deploy_windows import DeployWindows

Environment = Literal["dev", "stg", "prd"]

DEFAULT_DATABASE_URL = "sqlite:///.local/state.db"
DEFAULT_SOURCE_DATABASE_URL = "sqlite:///.local/source.db"
DEFAULT_MLFLOW_TRACKING_URI = "sqlite:///.local/mlflow.db"
PLACEHOLDER_MARKERS = ("changeme", "change-me", "placeholder", "<", "xxx")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line naming the variable."""


def env_file_path() -> Path:
    """Return the `.env` file the settings read (after the process environment)."""
    return Path(os.environ.get("SML_ENV_FILE", ".env"))


def _default_code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    try:
        version = metadata.version("stateful-ml")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+{sha}" if sha else version


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _check_sqlalchemy_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise ValueError(
            "expected a database URL like postgresql://user:pass@host:5432/db "
            "or sqlite:///path/to/file.db"
        ) from exc
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ValueError(
            f"expected a sqlite:// or postgresql:// URL, got the '{url.get_backend_name()}' scheme"
        )
    return value


class Settings(BaseSettings):
    """Every env-dependent value of Stateful ML, typed and validated.

    Secret values are `SecretStr`: printing a Settings object never shows them.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,  # an empty value (ConfigMap, .env) means "use the default"
        frozen=True,
        case_sensitive=True,
    )

    # --- identity of what is running -------------------------------------------------
    ENVIRONMENT: Environment = Field("dev", description="dev | stg | prd")
    CODE_VERSION: str = Field(
        default_factory=_default_code_version,
        description="version of this code (package version + git commit)",
    )
    IMAGE_VERSION: str = Field(
        "local", description="runtime image version, baked in at docker build time"
    )
    LOCAL_DIR: Path = Field(Path(".local"), description="folder for embedded local state")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- state and source data ---------------------------------------------------------
    DATABASE_URL: SecretStr = Field(
        SecretStr(DEFAULT_DATABASE_URL),
        description="state database (traffic, feedback, rollouts, events, releases)",
    )
    SOURCE_DATABASE_URL: SecretStr = Field(
        SecretStr(DEFAULT_SOURCE_DATABASE_URL),
        description="database holding the source table of training data",
    )
    SOURCE_TABLE: str = Field("queries", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    SUPABASE_URL: str | None = Field(
        None, description="Supabase project URL; with SUPABASE_KEY, source reads go over REST"
    )
    SUPABASE_KEY: SecretStr | None = None

    # --- MLflow and Prefect ------------------------------------------------------------
    MLFLOW_TRACKING_URI: str = DEFAULT_MLFLOW_TRACKING_URI
    MLFLOW_ARTIFACT_LOCATION: str = Field(
        ".local/mlartifacts",
        description="artifact root for experiments created here (path or s3:// URI)",
    )
    MLFLOW_EXPERIMENT: str = "stateful-ml"
    PREFECT_API_URL: str | None = Field(
        None, description="Prefect server API; unset = Prefect's temporary local server"
    )
    PREFECT_API_KEY: SecretStr | None = None
    PREFECT_WORK_POOL: str = "local"
    K8S_NAMESPACE: str = Field("stateful-ml", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    MODELS: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["intent-classifier", "faq-retriever"],
        description="model families this environment ships (comma separated); the first "
        "answers /predict",
    )

    # --- router ------------------------------------------------------------------------
    ROUTER_HOST: str = "127.0.0.1"
    ROUTER_PORT: int = Field(8080, ge=1, le=65535)
    ROUTER_POLL_SECONDS: float = Field(1.0, gt=0, le=60)
    ROUTER_MAX_BODY_BYTES: int = Field(16_384, ge=256)
    ROUTER_MAX_TEXT_CHARS: int = Field(2_000, ge=1)
    ROUTER_CANDIDATE_TIMEOUT_MS: float = Field(250.0, gt=0)
    ROUTER_BATCH_MAX: int = Field(
        64, ge=1, le=1024, description="most requests of one model version in one predict call"
    )
    ROUTER_BATCH_WAIT_MS: float = Field(
        0.0, ge=0, le=50, description="linger before a batch, only under concurrency (0: none)"
    )
    ROUTER_WORKERS: int = Field(
        0, ge=0, le=64, description="`sml serve` processes; 0 = one per core"
    )
    ROUTER_SHADOW_QUEUE: int = Field(
        256, ge=1, description="most shadow calls outstanding; more are dropped and counted"
    )
    ROUTER_SHADOW_LINGER_MS: float = Field(
        200.0, ge=0, le=5_000,
        description="a shadow job waits this long for a candidate request to ride with",
    )  # fmt: skip
    ANSWER_TOP_K: int = Field(
        3, ge=1, le=10, description="answers /answer returns when the request names no k"
    )
    MODEL_CACHE_DIR: Path = Path(".local/models")
    TRAFFIC_BATCH_SIZE: int = Field(500, ge=1)
    TRAFFIC_FLUSH_SECONDS: float = Field(0.5, gt=0)
    TRAFFIC_BUFFER_MAX: int = Field(50_000, ge=100)
    TRAFFIC_SPILL_DIR: Path = Path(".local/spill")

    # --- canary policy -------------------------------------------------------------------
    CANARY_STAGES: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [1.0, 10.0, 25.0, 50.0, 100.0],
        description="canary stage percents, increasing, ending at 100 (comma separated)",
    )
    CANARY_BAKE_SECONDS: float = Field(600.0, ge=0)
    CANARY_MIN_SAMPLES: int = Field(200, ge=1, description="per arm, per stage")
    CANARY_ALPHA: float = Field(0.05, gt=0, lt=0.5)
    CANARY_ERROR_MARGIN: float = Field(
        0.01, ge=0, description="allowed absolute excess of candidate error rate"
    )
    CANARY_P95_MAX_MS: float = Field(250.0, gt=0, description="hard p95 latency limit")
    CANARY_P95_MARGIN: float = Field(
        0.5, ge=0, description="allowed relative excess of candidate p95 over champion"
    )
    CANARY_FEEDBACK_MARGIN: float = Field(
        0.05, ge=0, description="allowed absolute excess of negative-feedback rate"
    )
    CANARY_FOLLOWUP_SECONDS: float = Field(
        60.0, gt=0, description="a user's next query this soon after an answer is a reformulation"
    )
    CANARY_ABANDONMENT_SECONDS: float = Field(
        300.0, gt=0, description="an answer with no request or feedback this long is abandoned"
    )
    CANARY_REFORMULATION_MARGIN: float = Field(
        0.03, ge=0, description="allowed absolute excess of the reformulation rate"
    )
    CANARY_HANDOFF_MARGIN: float = Field(
        0.02, ge=0, description="allowed absolute excess of the hand-off rate"
    )
    CANARY_ABANDONMENT_MARGIN: float = Field(
        0.03, ge=0, description="allowed absolute excess of the abandonment rate"
    )
    CANARY_REQUIRE_APPROVAL: bool = False
    CANARY_APPROVAL_TIMEOUT_SECONDS: int = Field(3600, ge=1)
    DEPLOY_WINDOWS: str = Field(
        "",
        description="when rollouts may advance/promote, e.g. 'Mon-Thu 09:00-16:00'; empty: always",
    )
    DEPLOY_TIMEZONE: str = Field("UTC", description="IANA zone of DEPLOY_WINDOWS and freeze dates")
    DEPLOY_FREEZE_DATES: str = Field("", description="closed days, e.g. 2026-12-24,2026-12-31")
    ALERT_WEBHOOK_URL: SecretStr | None = Field(
        None, description="optional: JSON POST on rollback and promotion (may hold a token)"
    )

    # --- shadow evaluation gates --------------------------------------------------------
    SHADOW_WINDOW_HOURS: float = Field(24.0, gt=0)
    SHADOW_SAMPLE_SIZE: int = Field(5_000, ge=1)
    SHADOW_BATCH_SIZE: int = Field(
        10_000,
        ge=1,
        description="requests per replay chunk (one mapped task); a task costs Prefect "
        "~50-100 ms on a Dask worker, so chunks of 10,000 amortise it (bench/shadow.py)",
    )
    SHADOW_MIN_AGREEMENT: float = Field(0.80, ge=0, le=1)
    SHADOW_MAX_ERROR_RATE: float = Field(0.01, ge=0, le=1)
    SHADOW_MAX_P95_MS: float = Field(200.0, gt=0)
    SHADOW_MAX_ACCURACY_DROP: float = Field(0.02, ge=0, le=1)

    # --- pre-canary load test (core.loadtest, docs/load_test.md) --------------------------
    LOADTEST_ENABLED: bool = Field(
        True, description="shadow evaluation load-tests a passing candidate before its canary"
    )
    LOADTEST_QUERIES: int = Field(500, ge=1, description="most recent production queries replayed")
    LOADTEST_RATE_RPS: float = Field(50.0, gt=0, description="open-loop target rate")
    LOADTEST_CONNECTIONS: int = Field(8, ge=1, le=256, description="closed-loop connections")
    LOADTEST_PHASE_SECONDS: float = Field(2.0, gt=0, le=600, description="per phase and model")
    LOADTEST_ROUNDS: int = Field(5, ge=1, le=20, description="interleaved rounds of all phases")
    LOADTEST_TIMEOUT_SECONDS: float = Field(5.0, gt=0, description="per request; then an error")
    LOADTEST_P95_MAX_MS: float = Field(250.0, gt=0, description="hard p95 limit at the target rate")
    LOADTEST_P95_MARGIN: float = Field(
        0.5, ge=0, description="allowed relative excess of candidate p95 over champion"
    )
    LOADTEST_MAX_ERROR_RATE: float = Field(0.01, ge=0, le=1)
    LOADTEST_THROUGHPUT_MARGIN: float = Field(
        0.25, ge=0, le=1, description="allowed relative shortfall of saturation throughput"
    )

    # --- release state (core.release_state) ----------------------------------------------
    RELEASE_STATE_KEEP: int = Field(
        5, ge=1, description="releases per env whose states garbage collection keeps"
    )
    RELEASE_STATE_CHUNK_ROWS: int = Field(
        2_000, ge=1, description="corpus rows embedded and written per state-build chunk"
    )

    # --- compat preflight (core.compat_preflight) ----------------------------------------
    COMPAT_DRIFT_TOLERANCE: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of a champion's golden predictions a new environment may change",
    )

    # --- distributed chunks (prefect-dask) -------------------------------------------------
    DASK_SCHEDULER_ADDRESS: str | None = Field(
        None,
        pattern=r"^(tcp|tls|ws|wss|inproc|ucx)://\S+$",
        description="Dask scheduler (tcp://host:8786) the replay and state-build chunks run on; "
        "empty: in process",
    )

    # --- validators ----------------------------------------------------------------------
    @field_validator("MODELS", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("CANARY_STAGES", mode="before")
    @classmethod
    def _parse_stages(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("CANARY_STAGES")
    @classmethod
    def _check_stages(cls, value: list[float]) -> list[float]:
        if not value or value[-1] != 100.0:
            raise ValueError("expected increasing percents ending at 100, like 1,10,25,50,100")
        if any(b <= a for a, b in pairwise(value)) or value[0] <= 0:
            raise ValueError("expected strictly increasing percents in (0, 100]")
        return value

    @model_validator(mode="after")
    def _check_deploy_windows(self) -> Settings:
        _ = self.deploy_windows  # parsing is the check; its error names the variable
        return self

    @field_validator("ALERT_WEBHOOK_URL")
    @classmethod
    def _check_webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("expected an http(s):// URL")
        return value

    @field_validator("DATABASE_URL", "SOURCE_DATABASE_URL")
    @classmethod
    def _check_db_url(cls, value: SecretStr) -> SecretStr:
        _check_sqlalchemy_url(value.get_secret_value())
        return value

    @field_validator("SUPABASE_URL")
    @classmethod
    def _check_supabase_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("expected an http(s):// URL like https://<project>.supabase.co")
        return value or None

    @model_validator(mode="after")
    def _refuse_placeholders_outside_dev(self) -> Settings:
        if self.ENVIRONMENT == "dev":
            return self
        for name in ("DATABASE_URL", "SUPABASE_KEY", "PREFECT_API_KEY"):
            secret = getattr(self, name)
            if secret is None:
                continue
            raw = secret.get_secret_value().lower()
            if any(marker in raw for marker in PLACEHOLDER_MARKERS):
                raise ValueError(
                    f"{name}: holds a placeholder value, not allowed in {self.ENVIRONMENT}"
                )
        if self.DATABASE_URL.get_secret_value() == DEFAULT_DATABASE_URL:
            raise ValueError(
                f"DATABASE_URL: must be set explicitly in {self.ENVIRONMENT} "
                "(the embedded SQLite default is for dev only)"
            )
        return self

    # --- helpers -------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        """The state database URL (a secret: do not log it)."""
        return self.DATABASE_URL.get_secret_value()

    @property
    def source_database_url(self) -> str:
        """The source database URL (a secret: do not log it)."""
        return self.SOURCE_DATABASE_URL.get_secret_value()

    @property
    def uses_supabase(self) -> bool:
        """True when source reads should go over Supabase REST."""
        return bool(self.SUPABASE_URL and self.SUPABASE_KEY)

    @property
    def deploy_windows(self) -> DeployWindows:
        """DEPLOY_WINDOWS, DEPLOY_TIMEZONE and DEPLOY_FREEZE_DATES, parsed."""
        return DeployWindows.parse(
            self.DEPLOY_WINDOWS, self.DEPLOY_TIMEZONE, self.DEPLOY_FREEZE_DATES
        )

    @property
    def reports_dir(self) -> Path:
        """Where flows and the demo write PNG and markdown reports."""
        return self.LOCAL_DIR / "reports"


SECRET_FIELDS: frozenset[str] = frozenset(
    name
    for name, info in Settings.model_fields.items()
    if info.annotation is not None and "SecretStr" in str(info.annotation)
)
PUBLIC_FIELDS: frozenset[str] = frozenset(Settings.model_fields) - SECRET_FIELDS


def _one_line(exc: ValidationError) -> str:
    """Turn a pydantic error into one line naming each variable and what it expects."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        if loc == "settings" and ":" in msg:
            parts.append(msg)
            continue
        # never echo the input of a secret field
        shown = ""
        if loc in PUBLIC_FIELDS and err.get("input") is not None and err["type"] != "missing":
            shown = f" (got {str(err['input'])[:60]!r})"
        parts.append(f"{loc}: {msg}{shown}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from env, then `.env`, then defaults.

    Raises:
        ConfigError: with one line naming every bad variable and what it expects.
    """
    try:
        return Settings(_env_file=env_file_path(), **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide Settings (cached; call `get_settings.cache_clear()` in tests)."""
    return load_settings()


def value_sources() -> dict[str, str]:
    """Where each value came from: `env`, `.env` or `default`."""
    from dotenv import dotenv_values

    dotenv = dotenv_values(env_file_path()) if env_file_path().exists() else {}
    sources = {}
    for name in Settings.model_fields:
        if os.environ.get(name):  # empty values are ignored, like Settings does
            sources[name] = "env"
        elif dotenv.get(name):
            sources[name] = ".env"
        else:
            sources[name] = "default"
    return sources


DATABASE_URL_FIELDS = frozenset({"DATABASE_URL", "SOURCE_DATABASE_URL"})


def _masked_secret(name: str, value: SecretStr | None) -> str:
    """How a secret shows: database URLs with the password replaced, others fully masked."""
    if value is None:
        return "(unset)"
    if name in DATABASE_URL_FIELDS:
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            return "********"
        hidden = {k: "***" for k in url.query if "pass" in k.lower() or "key" in k.lower()}
        return url.update_query_dict(hidden).render_as_string(hide_password=True)
    return "********"


def masked_items(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, display value, source) for every field, secrets masked."""
    sources = value_sources()
    rows = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in SECRET_FIELDS:
            display = _masked_secret(name, value)
        elif isinstance(value, list):
            display = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        else:
            display = "(unset)" if value is None else str(value)
        rows.append((name, display, sources[name]))
    return rows
