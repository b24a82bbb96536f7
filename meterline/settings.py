"""The settings: every knob is a ``METERLINE_*`` environment variable, those of one process's
job grouped under it (``settings.sink``, ``settings.pipeline``, ``settings.intake``,
``settings.smtp``, ``settings.topics``)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterline.late_usage import LATE_USAGE_MONTHS


class Topics(BaseSettings):
    """Kafka topic names, so no module spells a topic as a bare string."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_TOPIC_")

    events: str = "meterline.usage.events"
    rated: str = "meterline.usage.rated"
    dead_letter: str = "meterline.usage.deadletter"
    catalog: str = "meterline.catalog"
    stored: str = "meterline.usage.stored"
    alerts: str = "meterline.credit.alerts"
    enforcement: str = "meterline.credit.enforcement"
    partitions: int = 4


class SinkSettings(BaseSettings):
    """The sink's (``METERLINE_SINK_*``)."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_SINK_")

    batch_max_rows: int = 200_000
    batch_max_bytes: int = Field(
        default=64 * 1024 * 1024, description="flush once this much is buffered, however recent the last flush"
    )
    flush_interval_s: float = 0.25
    in_api: bool = Field(
        default=True,
        description="the API hosts the sink (it must beside embedded chDB); false when `python -m sinks.main` runs it",
    )


class PipelineSettings(BaseSettings):
    """The Faust workers' (``METERLINE_PIPELINE_*``)."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_PIPELINE_")

    workers: int = 2
    commit_interval_s: float = 2.8
    batch_messages: int = 50
    batch_within_s: float = 0.05


class IntakeSettings(BaseSettings):
    """The API's intake of pushed events (``METERLINE_INTAKE_*``)."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_INTAKE_")

    name: str = Field(
        default="api",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="names this API process's spool and numbers its messages: unique per API replica",
    )
    spool_max_bytes: int = Field(
        default=1024**3, ge=0, description="accepted events kept on disk at most while the broker is away"
    )


class SmtpSettings(BaseSettings):
    """Where invoices are emailed from (``METERLINE_SMTP_*``); unset host: not emailed."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_SMTP_")

    host: str | None = Field(default=None, description="invoices are emailed when set")
    port: int = 25
    sender: str = "billing@meterline.invalid"
    starttls: bool = False
    user: str | None = None
    password: str | None = None


class GatewaySettings(BaseModel):
    """One payment gateway account: its API key and the secret that signs its webhooks."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["stripe"] = "stripe"
    api_key: SecretStr
    webhook_secret: SecretStr
    api_base: str | None = Field(default=None, description="another API address (stripe-mock in tests)")
    timeout_s: float = Field(default=10, gt=0, le=60)
    network_retries: int = Field(default=2, ge=0, le=5)


GatewayName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]


class PaymentSettings(BaseSettings):
    """Card payments (``METERLINE_PAYMENTS_*``): the gateways an issuer's catalog entry may name."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_PAYMENTS_")

    gateways: dict[GatewayName, GatewaySettings] = Field(
        default_factory=dict,
        description='JSON: {"stripe-eu": {"api_key": "sk_...", "webhook_secret": "whsec_..."}}; '
        "each gateway's webhooks come to /v1/payments/webhooks/<name>",
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
        description="where buyers reach this API (payment links on invoices, the way back from a "
        "payment page); unset: http://api_host:api_port",
    )
    charge_check_interval_s: float = Field(default=60, gt=0, description="seconds between automatic charge runs")


class Settings(BaseSettings):
    """Where the brokers, ClickHouse and the API are; read once at process start."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_", env_nested_delimiter="__")

    kafka_bootstrap: str = "127.0.0.1:19092"
    embedded_broker: bool = Field(default=True, description="make run starts Tansu on kafka_bootstrap's port")
    clickhouse_dsn: str = Field(
        default="",
        description="chdb:///abs/path (embedded, default under data_dir) or http(s)://host:8123",
    )
    clickhouse_database: str = Field(default="meterline", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    data_dir: Path = Path("data")
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    worker_metrics_port: int = 9108
    catalog: Path = Field(
        default=Path(__file__).resolve().parent.parent / "billing" / "catalog.yaml",
        description="YAML catalog: parties, price plans, subscriptions, taxes",
    )
    close_grace_h: float = Field(default=48, description="hours after a month ends before it closes on its own")
    close_check_interval_s: float = 600
    auto_close: bool = True
    delivery_check_interval_s: float = 5
    credit_settle_interval_s: float = Field(
        default=1, gt=0, description="seconds between passes over prepaid credit: settlement, alerts, enforcement"
    )
    webhook_allowed_hosts: str = Field(
        default="",
        description="comma-separated hosts webhook endpoints may name (*.example.com: its subdomains); "
        "empty: no endpoint may be registered",
    )
    consumer_group: str = "meterline"
    query_clients: int = Field(default=16, ge=1, description="ClickHouse clients the API's readers use side by side")
    late_usage_months: int = Field(
        default=LATE_USAGE_MONTHS,
        ge=0,
        description="months before the current one whose usage is still accepted (and billed late)",
    )
    agent_encoding: Literal["columnar", "json"] = Field(
        default="columnar",
        description="how agents send VM samples: Arrow streams (schema vm.sample/1) or JSON CloudEvents; "
        "vDC and XaaS samples go as JSON either way",
    )
    clock_skew_s: float = Field(default=900, ge=0, description="how far ahead of now an event's time may be")
    max_sample_bytes: int = Field(default=10**15, description="most bytes one sample may count, per direction")
    max_vdc_amount: int = Field(default=10**9, description="most MHz, MiB or GiB a vDC sample may report")
    max_xaas_quantity: Decimal = Field(default=Decimal(10**12), description="most units one XaaS sample may report")
    late_after_s: float = Field(
        default=3600, ge=0, description="usage stored this long after its hour ended shows as late in completeness"
    )
    admin_key: SecretStr | None = Field(
        default=None, description="an admin API key outside the key store: the first key, and a way back in"
    )
    token_secret: SecretStr | None = Field(
        default=None,
        description="signs read tokens (at least 32 characters; the same on every API replica); "
        "unset: a secret kept in data_dir",
    )
    rate_limit_per_s: float = Field(default=20, gt=0, description="requests per second per key, after a burst")
    rate_limit_burst: int = Field(default=100, ge=1)
    ingest_rate_limit_per_s: float = Field(default=200, gt=0, description="the same for ingest keys")
    ingest_rate_limit_burst: int = Field(default=1000, ge=1)
    topics: Topics = Field(default_factory=Topics)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    payments: PaymentSettings = Field(default_factory=PaymentSettings)

    @property
    def effective_clickhouse_dsn(self) -> str:
        """The configured DSN, or the embedded chDB engine inside ``data_dir``."""
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"
