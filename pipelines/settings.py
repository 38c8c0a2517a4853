"""The one configuration object of the analyzer.

Every knob is read here, from the environment (or a ``.env`` file), and nowhere else: a
module that needs a setting receives this object. Field names map to the environment
variables in the README's configuration table.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.context_window import DEFAULT_AFTER_SECONDS
from pipelines.notify.routing import NotifyRoute

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ALL_INTERFACES = ("0.0.0.0", "::")
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")

DEFAULT_PROMETHEUS_QUERIES: dict[str, str] = {
    "cpu_usage_percent": 'sum(rate(container_cpu_usage_seconds_total{{container="{service}"}}[1m])) * 100',
    "memory_usage_percent": (
        'sum(container_memory_working_set_bytes{{container="{service}"}})'
        ' / sum(container_spec_memory_limit_bytes{{container="{service}"}}) * 100'
    ),
    "error_rate": (
        'sum(rate(http_requests_total{{service="{service}",status=~"5.."}}[1m]))'
        ' / sum(rate(http_requests_total{{service="{service}"}}[1m]))'
    ),
    "latency_p95_seconds": (
        'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{service="{service}"}}[1m])))'
    ),
}


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

class Settings(BaseSettings):
    """Configuration of the analyzer; see the README's configuration table."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True,
                                      hide_input_in_errors=True)  # the input holds secrets

    # --- reasoning
    openai_api_key: str | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_model: str = Field(default="gpt-4-turbo-preview", validation_alias="OPENAI_MODEL")
    llm_timeout_seconds: float = Field(default=30.0, gt=0, validation_alias="RCA_LLM_TIMEOUT_SECONDS")
    llm_max_attempts: int = Field(default=3, ge=1, le=10, validation_alias="RCA_LLM_MAX_ATTEMPTS")
    llm_max_concurrency: int = Field(default=4, ge=1, validation_alias="RCA_LLM_MAX_CONCURRENCY")
    llm_input_token_budget: int = Field(default=8000, ge=500, validation_alias="RCA_LLM_INPUT_TOKEN_BUDGET")
    llm_backoff_seconds: float = Field(default=1.0, ge=0, validation_alias="RCA_LLM_BACKOFF_SECONDS")
    llm_cost_per_1k_input_tokens: float | None = Field(default=None, ge=0, validation_alias="RCA_LLM_COST_PER_1K_INPUT")
    llm_cost_per_1k_output_tokens: float | None = Field(default=None, ge=0, validation_alias="RCA_LLM_COST_PER_1K_OUTPUT")

    # --- general
    # the level of this app's own loggers (anomaly, pipelines, deployments) in every process: README "Configuration"
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    # An alert's context (pipelines/context_window.py): INCIDENT_CONTEXT_WINDOW seconds before the
    # alert to RCA_CONTEXT_WAIT_SECONDS after it (the Kafka reader waits that long for late lines;
    # Loki and Prometheus are queried to the same end); the baseline is the range of the same width before.
    context_window_seconds: int = Field(default=300, ge=1, validation_alias="INCIDENT_CONTEXT_WINDOW")
    data_dir: Path = Field(default=Path(".rca"), validation_alias="RCA_DATA_DIR")
    # user runbooks (pipelines/runbooks.py), tried before the built-in playbooks; unset: configs/runbooks if it exists
    runbooks_dir: Path | None = Field(default=None, validation_alias="RCA_RUNBOOKS_DIR")

    # --- storage
    database_url: str | None = Field(default=None, validation_alias="RCA_DATABASE_URL")
    # a streaming replica for list, detail, stats and similar reads (README "History: partitions, archival, read replica")
    database_read_url: str | None = Field(default=None, validation_alias="RCA_DATABASE_READ_URL")
    # incidents resolved longer ago than this move to the archive (the daily history job, `rca db archive`)
    retention_days: int = Field(default=90, ge=1, le=36_500, validation_alias="RCA_RETENTION_DAYS")
    # the ingress' history job (partitions ahead, archival) runs this often; 0: never (rca db archive only)
    history_job_seconds: float = Field(default=86_400.0, ge=0, validation_alias="RCA_HISTORY_JOB_SECONDS")

    # --- streaming
    kafka_bootstrap: str | None = Field(default=None, validation_alias="RCA_KAFKA_BOOTSTRAP")
    kafka_partitions: int = Field(default=3, ge=1, validation_alias="RCA_KAFKA_PARTITIONS")
    kafka_group_id: str = Field(default="rca-reader", validation_alias="RCA_KAFKA_GROUP_ID")
    kafka_alerts_topic: str = Field(default="rca.alerts", validation_alias="RCA_KAFKA_ALERTS_TOPIC")
    kafka_logs_topic: str = Field(default="rca.logs", validation_alias="RCA_KAFKA_LOGS_TOPIC")
    kafka_dlq_topic: str = Field(default="rca.dlq", validation_alias="RCA_KAFKA_DLQ_TOPIC")
    kafka_spans_topic: str = Field(default="rca.spans", validation_alias="RCA_KAFKA_SPANS_TOPIC")
    digest_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024, validation_alias="RCA_DIGEST_MAX_BYTES")
    # digesters (pipelines/streaming/digester_actors.py): Ray actors in one consumer group on rca.logs and rca.spans
    digesters_per_node: int = Field(default=1, ge=1, le=64, validation_alias="RCA_DIGESTERS_PER_NODE")
    digester_num_cpus: float = Field(default=0.2, gt=0, le=64, validation_alias="RCA_DIGESTER_CPUS")
    # each digester's spans of its rca.spans partitions (pipelines/streaming/span_store.py), shared by them
    span_buffer_max_bytes: int = Field(default=128 * 1024 * 1024, ge=1024, validation_alias="RCA_SPAN_BUFFER_MAX_BYTES")
    context_wait_seconds: float = Field(default=DEFAULT_AFTER_SECONDS, ge=0, validation_alias="RCA_CONTEXT_WAIT_SECONDS")
    # How long an alert's context waits for the log digesters to read rca.logs to its end (a digester that
    # is joining the group or rebuilding moved partitions after a crash); past it the analysis goes on and
    # names the shortfall in its degraded reasons. Above the digesters' session timeout (10 s), so that a
    # crashed member's partitions can move and be re-read within it.
    context_catchup_seconds: float = Field(default=30.0, ge=0, validation_alias="RCA_CONTEXT_CATCHUP_SECONDS")
    max_inflight_analyses: int = Field(default=8, ge=1, validation_alias="RCA_MAX_INFLIGHT_ANALYSES")
    # Kafka over TLS (README "Security" > "TLS", pipelines/tls.kafka_client_options): SSL, or SASL_SSL with
    # SCRAM; never SASL_PLAINTEXT (credentials in clear). The CA is RCA_KAFKA_CA_FILE, else RCA_CA_FILE,
    # else the system store; a client certificate is optional.
    kafka_security_protocol: str = Field(default="PLAINTEXT", validation_alias="RCA_KAFKA_SECURITY_PROTOCOL")
    kafka_ca_file: FilePath | None = Field(default=None, validation_alias="RCA_KAFKA_CA_FILE")
    kafka_cert_file: FilePath | None = Field(default=None, validation_alias="RCA_KAFKA_CERT_FILE")
    kafka_key_file: FilePath | None = Field(default=None, validation_alias="RCA_KAFKA_KEY_FILE")
    kafka_sasl_mechanism: str = Field(default="SCRAM-SHA-512", validation_alias="RCA_KAFKA_SASL_MECHANISM")
    kafka_sasl_username: str | None = Field(default=None, validation_alias="RCA_KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(default=None, validation_alias="RCA_KAFKA_SASL_PASSWORD")
    kafka_sasl_password_file: Path | None = Field(default=None, validation_alias="RCA_KAFKA_SASL_PASSWORD_FILE")

    # --- context sources
    prometheus_url: str | None = Field(default=None, validation_alias="RCA_PROMETHEUS_URL")
    prometheus_queries: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_PROMETHEUS_QUERIES), validation_alias="RCA_PROMETHEUS_QUERIES"
    )
    loki_url: str | None = Field(default=None, validation_alias="RCA_LOKI_URL")
    loki_selector_labels: list[str] = Field(
        default_factory=lambda: ["service", "namespace", "pod", "app"], validation_alias="RCA_LOKI_SELECTOR_LABELS"
    )
    source_timeout_seconds: float = Field(default=10.0, gt=0, validation_alias="RCA_SOURCE_TIMEOUT_SECONDS")
    loki_max_lines: int = Field(default=20_000, ge=1, validation_alias="RCA_LOKI_MAX_LINES")
    file_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, validation_alias="RCA_FILE_MAX_BYTES")

    # --- pipeline and limits
    summarizer_replicas: int = Field(default=2, ge=1, validation_alias="RCA_SUMMARIZER_REPLICAS")
    # one chunk = one engine batch (anomaly.engine.BATCH_LINES): fewer, larger hand-offs between replicas
    chunk_lines: int = Field(default=65_536, ge=100, validation_alias="RCA_CHUNK_LINES")
    max_line_bytes: int = Field(default=65_536, ge=256, validation_alias="RCA_MAX_LINE_BYTES")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, validation_alias="RCA_MAX_BODY_BYTES")
    max_lines_per_request: int = Field(default=500_000, ge=1, validation_alias="RCA_MAX_LINES_PER_REQUEST")

    # --- security (README "Security"): auth is on when a JWT key is given or RCA_AUTH_REQUIRED=true
    auth_required: bool | None = Field(default=None, validation_alias="RCA_AUTH_REQUIRED")
    auth_jwt_secret: str | None = Field(default=None, min_length=32, validation_alias="RCA_AUTH_JWT_SECRET")
    auth_jwt_public_key_file: Path | None = Field(default=None, validation_alias="RCA_AUTH_JWT_PUBLIC_KEY_FILE")
    auth_jwks_file: Path | None = Field(default=None, validation_alias="RCA_AUTH_JWKS_FILE")
    auth_issuer: str = Field(default="rca", validation_alias="RCA_AUTH_ISSUER")
    auth_audience: str = Field(default="rca-api", validation_alias="RCA_AUTH_AUDIENCE")
    webhook_token: str | None = Field(default=None, validation_alias="RCA_WEBHOOK_TOKEN")
    webhook_token_file: Path | None = Field(default=None, validation_alias="RCA_WEBHOOK_TOKEN_FILE")
    rate_limit_per_minute: int = Field(default=600, ge=0, validation_alias="RCA_RATE_LIMIT_PER_MINUTE")
    trusted_proxies: list[str] = Field(default_factory=list, validation_alias="RCA_TRUSTED_PROXIES")

    # --- TLS (README "Security" > "TLS", pipelines/tls.py): HTTPS from Serve's proxy when a certificate and
    # key are given, client certificates required when a client CA is given; RCA_CA_FILE is the CA bundle
    # outgoing HTTPS (Loki, Prometheus, the LLM, notifications) verifies servers with (default: httpx's)
    tls_cert_file: FilePath | None = Field(default=None, validation_alias="RCA_TLS_CERT_FILE")
    tls_key_file: FilePath | None = Field(default=None, validation_alias="RCA_TLS_KEY_FILE")
    tls_client_ca_file: FilePath | None = Field(default=None, validation_alias="RCA_TLS_CLIENT_CA_FILE")
    ca_file: FilePath | None = Field(default=None, validation_alias="RCA_CA_FILE")

    # --- HTTP
    host: str = Field(default="127.0.0.1", validation_alias="RCA_HOST")
    port: int = Field(default=8000, ge=1, le=65535, validation_alias="RCA_PORT")
    # the API as the CLI's commands that call it reach it (rca feedback, rca similar): a JWT or an API key
    api_url: str = Field(default="http://127.0.0.1:8000", validation_alias="RCA_API_URL")
    api_token: SecretStr | None = Field(default=None, validation_alias="RCA_API_TOKEN")
    # cite confirmed similar past incidents in new analyses (pipelines/feedback.py); off for evaluations,
    # whose figures must not depend on the feedback of whatever database they run against
    recall_history: bool = Field(default=True, validation_alias="RCA_RECALL_HISTORY")
    # Ray's metrics export port (README "Security"): loopback, or every interface ("0.0.0.0") for a
    # Prometheus on another host; unset, it follows RCA_HOST (loopback for a local `rca serve`).
    metrics_host: str | None = Field(default=None, validation_alias="RCA_METRICS_HOST")
    # where people open the analyzer (incident links in notifications), e.g. https://rca.example.com
    public_url: str | None = Field(default=None, validation_alias="RCA_PUBLIC_URL")

    # --- notifications (README "Notify"): secrets from the environment or a file (*_FILE), never logged
    slack_webhook_url: SecretStr | None = Field(default=None, validation_alias="RCA_SLACK_WEBHOOK_URL")
    slack_webhook_url_file: Path | None = Field(default=None, validation_alias="RCA_SLACK_WEBHOOK_URL_FILE")
    pagerduty_routing_key: SecretStr | None = Field(default=None, validation_alias="RCA_PAGERDUTY_ROUTING_KEY")
    pagerduty_routing_key_file: Path | None = Field(default=None, validation_alias="RCA_PAGERDUTY_ROUTING_KEY_FILE")
    pagerduty_events_url: str = Field(default="https://events.pagerduty.com/v2/enqueue",
                                      validation_alias="RCA_PAGERDUTY_EVENTS_URL")
    notify_webhook_url: SecretStr | None = Field(default=None, validation_alias="RCA_NOTIFY_WEBHOOK_URL")
    notify_webhook_url_file: Path | None = Field(default=None, validation_alias="RCA_NOTIFY_WEBHOOK_URL_FILE")
    notify_webhook_secret: SecretStr | None = Field(default=None, validation_alias="RCA_NOTIFY_WEBHOOK_SECRET")
    notify_webhook_secret_file: Path | None = Field(default=None, validation_alias="RCA_NOTIFY_WEBHOOK_SECRET_FILE")
    notify_routes: list[NotifyRoute] = Field(default_factory=list, validation_alias="RCA_NOTIFY_ROUTES")
    notify_timeout_seconds: float = Field(default=10.0, gt=0, validation_alias="RCA_NOTIFY_TIMEOUT_SECONDS")
    notify_backoff_seconds: float = Field(default=1.0, gt=0, validation_alias="RCA_NOTIFY_BACKOFF_SECONDS")
    notify_backoff_max_seconds: float = Field(default=300.0, gt=0, validation_alias="RCA_NOTIFY_BACKOFF_MAX_SECONDS")
    notify_give_up_seconds: float = Field(default=86_400.0, gt=0, validation_alias="RCA_NOTIFY_GIVE_UP_SECONDS")
    notify_poll_seconds: float = Field(default=1.0, gt=0, validation_alias="RCA_NOTIFY_POLL_SECONDS")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level == "WARN":
            level = "WARNING"
        if level not in LOG_LEVELS:
            raise ValueError(f"LOG_LEVEL={value!r}: expected one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("metrics_host")
    @classmethod
    def _metrics_bind(cls, value: str | None) -> str | None:
        if value is not None and value not in LOOPBACK_HOSTS + ALL_INTERFACES:
            raise ValueError(
                f"RCA_METRICS_HOST={value!r}: Ray's metrics agent listens either on loopback (127.0.0.1) or on "
                "every interface (0.0.0.0), never on one chosen interface; pick one and firewall the port")
        return value

    @field_validator("kafka_security_protocol")
    @classmethod
    def _kafka_protocol(cls, value: str) -> str:
        protocol = value.strip().upper()
        if protocol == "SASL_PLAINTEXT":
            raise ValueError(
                "RCA_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT sends the SASL credentials and every record in clear; "
                "use SASL_SSL")
        if protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise ValueError(
                f"RCA_KAFKA_SECURITY_PROTOCOL={value!r}: expected one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}")
        return protocol

    @field_validator("kafka_sasl_mechanism")
    @classmethod
    def _kafka_mechanism(cls, value: str) -> str:
        mechanism = value.strip().upper()
        if mechanism not in KAFKA_SASL_MECHANISMS:
            raise ValueError(
                f"RCA_KAFKA_SASL_MECHANISM={value!r}: expected one of {', '.join(KAFKA_SASL_MECHANISMS)}")
        return mechanism

    @model_validator(mode="after")
    def _kafka_tls(self) -> "Settings":
        """Refuse Kafka TLS or SASL settings that the chosen protocol would silently ignore, or lacks."""
        protocol = self.kafka_security_protocol
        if bool(self.kafka_cert_file) != bool(self.kafka_key_file):
            given, missing = (("RCA_KAFKA_CERT_FILE", "RCA_KAFKA_KEY_FILE") if self.kafka_cert_file
                              else ("RCA_KAFKA_KEY_FILE", "RCA_KAFKA_CERT_FILE"))
            raise ValueError(f"{given} is set but {missing} is not: a Kafka client certificate needs both")
        if protocol == "PLAINTEXT" and (self.kafka_ca_file or self.kafka_cert_file):
            raise ValueError(
                "RCA_KAFKA_CA_FILE or RCA_KAFKA_CERT_FILE is set but RCA_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: "
                "set it to SSL or SASL_SSL to use TLS to Kafka")
        has_sasl = bool(self.kafka_sasl_username or self.kafka_sasl_password or self.kafka_sasl_password_file)
        if protocol != "SASL_SSL" and has_sasl:
            raise ValueError(
                f"RCA_KAFKA_SASL_USERNAME/RCA_KAFKA_SASL_PASSWORD are set but RCA_KAFKA_SECURITY_PROTOCOL is {protocol}: "
                "SASL credentials are used with SASL_SSL only")
        if protocol == "SASL_SSL":
            if not self.kafka_sasl_username:
                raise ValueError("RCA_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs RCA_KAFKA_SASL_USERNAME")
            if self.kafka_sasl_password is None and self.kafka_sasl_password_file is None:
                raise ValueError(
                    "RCA_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs RCA_KAFKA_SASL_PASSWORD or RCA_KAFKA_SASL_PASSWORD_FILE")
        return self

    @model_validator(mode="after")
    def _tls_pairs(self) -> "Settings":
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            given, missing = (
                ("RCA_TLS_CERT_FILE", "RCA_TLS_KEY_FILE") if self.tls_cert_file else ("RCA_TLS_KEY_FILE", "RCA_TLS_CERT_FILE")
            )
            raise ValueError(f"{given} is set but {missing} is not: HTTPS needs both the certificate and its key")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError(
                "RCA_TLS_CLIENT_CA_FILE is set without RCA_TLS_CERT_FILE/RCA_TLS_KEY_FILE: client certificates "
                "need HTTPS; set the server's certificate and key too")
        return self

    @property
    def api_scheme(self) -> str:
        """``https`` when the API serves TLS (RCA_TLS_CERT_FILE), else ``http``."""
        return "https" if self.tls_cert_file else "http"

    @property
    def metrics_loopback(self) -> bool:
        """Whether Ray's metrics export port listens on loopback only (RCA_METRICS_HOST, else RCA_HOST)."""
        return (self.metrics_host or self.host) in LOOPBACK_HOSTS

    @property
    def llm_configured(self) -> bool:
        """An LLM is used when either a key or an OpenAI-compatible base URL is given."""
        return bool(self.openai_api_key or self.openai_base_url)


def secret_value(value: SecretStr | None, file: Path | None, name: str) -> str | None:
    """A secret given as ``name`` or in the file ``name``_FILE names (stripped); None when neither is set.

    The error names the variable and the file, never the secret.
    """
    if value is not None:
        return value.get_secret_value().strip() or None
    if file is None:
        return None
    try:
        return Path(file).read_text().strip() or None
    except OSError as exc:
        raise ValueError(f"{name}_FILE {file}: {exc.strerror}") from exc


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags, tests) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
