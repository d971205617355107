"""Configuration, from the environment (prefix ENVX_) or a .env file."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENVX_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://user:pass@host:port/db). Unset: an embedded server in data_dir.",
    )
    data_dir: Path = Field(default=Path(".envx"), description="Embedded database, signing key, demo keys.")
    host: str = "127.0.0.1"
    port: int = 8000
    inquiry_pdf_renders_per_address: int = Field(
        default=3, ge=1, le=100_000, description="Search-certificate PDFs one client address may have rendered at "
        "once before it gets one a minute (api/portal/pdfs.py); a PDF already rendered costs nothing.")
    trusted_proxies: str = Field(
        default="", max_length=1000, description="Comma-separated addresses of the reverse proxies whose "
        "X-Forwarded-For / X-Forwarded-Proto the server believes (uvicorn's forwarded_allow_ips). Empty: no proxy "
        "is believed, so a client cannot pick the address its rate limit, PDF share and audit trail see.")
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    origin: str = Field(default="envx.example/registry", description="Checkpoint origin line (log identity).")
    public_url: str | None = Field(
        default=None, max_length=200, description="The address the public reaches the API at, printed in "
        "certificate PDFs (e.g. https://registry.example); unset: http://<host>:<port>.")
    writer_max_batch: int = Field(default=2048, ge=1, le=100_000)
    writer_pipeline: bool = Field(
        default=False, description="The ledger writer applies the next batch in memory while one is written "
        "(ledger/writer.py `_pipeline`). Off until it is shown to pay: bench.ledger measures both ways.")
    db_pool_size: int = Field(default=10, ge=1, le=200)
    scheduler: bool = Field(default=True, description="Run the calendar jobs: sessions open, pause and close by each "
                            "market's hours. Off: operators do it by hand (always-open markets still come up open).")
    auction_min_bidding_seconds: int = Field(
        default=600, ge=1, le=7 * 24 * 3600, description="The shortest bidding window an auction may open: a seller "
        "(or a bank selling collateral) cannot run a window so short that only a bidder told in advance can bid.")
    auction_auto_end: bool = Field(
        default=True, description="The venue closes and allocates an auction once its bidding window has ended "
        "(exchange/trading/auction_clock.py). Off: the seller or an operator steps it by hand.")
    enforcement_registration_seconds: int = Field(
        default=15 * 86400, ge=1, le=90 * 86400, description="How long registration of an enforcement auction (a "
        "pledged lot sold on the pledgee's behalf) stays open before its bidding may open: the public notice of a "
        "judicial auction of movables (网络司法拍卖规定 art. 12: 15 days; 30 for other property rights).")
    max_api_keys_per_participant: int = Field(
        default=20, ge=1, le=10_000, description="Working API keys a participant may mint for itself; each key has "
        "its own rate limit, so the cap bounds a participant's rate too.")
    streams_per_address: int = Field(default=20, ge=1, le=100_000, description="Market streams (WebSockets) one "
                                     "client address may hold open at once; more are closed with code 1013.")
    streams_total: int = Field(default=5000, ge=1, le=1_000_000, description="Market streams open at once in all.")
    # Reliability: failover and read scaling.
    read_only: bool = Field(
        default=False, description="Serve reads only (e.g. from a hot standby): no ledger writer, no sequencers, "
        "no scheduler or workers, no migrations; every mutation answers 503 `read_only`.")
    writer_reconnect_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="How long the ledger writer keeps trying to reach a server "
        "(a restart, or a promoted standby named in a multi-host URL) before it stops.")
    signing_key: SecretStr | None = Field(
        default=None, description="Checkpoint signing key (C2SP signer key string, PRIVATE+KEY+...); never logged.")
    signing_key_file: Path | None = Field(
        default=None, description="Signing key file. Neither set: <data_dir>/signing.key, made on first start.")
    checkpoint_interval_seconds: float = Field(
        default=1.0, ge=0, le=3600, description="Under load, sign at most one checkpoint per interval.")
    # Transparency (c2sp.org tlog-tiles, tlog-witness): entry bundles, witnesses and the witness policy.
    tlog_entries_public: bool = Field(
        default=False, description="Serve entry bundles (/tile/entries/..., the entries' bytes: accounts and "
        "quantities) to anyone; false: to operators and auditors only (hash tiles and checkpoints are public).")
    witnesses: str = Field(
        default="", max_length=8000,
        description="Comma-separated witnesses, each '<witness verifier key> <submission URL prefix>' "
        "(the key is a C2SP cosignature/v1 vkey, name+keyid+base64; add-checkpoint is POSTed to "
        "<prefix>/add-checkpoint). Empty: no witnessing.")
    witness_quorum: int = Field(
        default=0, ge=0, le=64, description="How many of the configured witnesses must cosign a checkpoint for "
        "it to count as witnessed (receipts in .tlog-proof form wait for one); 0: no policy.")
    witness_timeout_seconds: float = Field(
        default=5.0, gt=0, le=600, description="Per add-checkpoint request; a slow or dead witness delays only "
        "its own cosignature, never a write.")
    # Pledges: webhook delivery, expiry sweeps, usable-deadline warnings.
    pledge_webhook_allow_http: bool = Field(
        default=False, description="Accept plain-http webhook URLs (tests, closed networks); https otherwise.")
    webhook_allowed_hosts: str = Field(
        default="", max_length=4000,
        description="Comma-separated host names or IP literals webhooks may reach although they are (or "
        "resolve to) loopback, private or link-local addresses (a receiver inside a closed network, tests). "
        "Empty: webhooks reach public addresses only.")
    pledge_worker_interval_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="Longest wait before the outbox is looked at again.")
    pledge_sweep_interval_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="How often expired pledges and freezes are swept.")
    pledge_deadline_warning_days: int = Field(
        default=90, ge=0, le=3650, description="Warn this many days before pledged units stop being usable.")
    pledge_confirm_days: int = Field(
        default=30, ge=1, le=366, description="A filed registration its pledgor has neither confirmed nor "
        "declined lapses (expired) this many days after filing, or at the end of its term if that is sooner.")
    enforcement_notice_days: int = Field(
        default=7, ge=0, le=366, description="A default the bank declares opens enforcement this many days after "
        "its notice date (or the day it was declared, if later), unless the pledgor consents earlier.")
    identifier_mismatches_per_day: int = Field(
        default=5, ge=1, le=1000, description="After this many filings, freezes or restoration orders naming a "
        "participant with a wrong identifier in one day (Asia/Shanghai), the caller's further ones are refused "
        "that day (409 identifier_attempts_exceeded).")
    shutdown_grace_seconds: int = Field(
        default=30, ge=1, le=3600, description="On SIGTERM or SIGINT: how long the server waits for requests in "
        "flight to finish, then the sequencers and the ledger writer for their batches (each step at most this "
        "long) before the last checkpoint is signed and it stops. A second signal stops at once.")
    default_calendar: str | None = Field(
        default="CN", max_length=32, description="The trading calendar (GET /v1/calendars) a market follows "
        "unless an operator assigned it another (PUT /v1/markets/{id}/calendar); also the calendar of "
        "restoration-order deadlines. A calendar that does not exist counts weekdays only.")
    # Security (api/security): maker-checker, per-key rate limits, signed instructions.
    maker_checker: bool = Field(
        default=True, description="Deposits, withdrawals, instrument and market definitions, participant "
        "admission, new enrollment codes and reinstatements by one operator wait for a second operator's approval "
        "(POST /v1/operator-actions/{id}/approve). false: they act at once and one operator gets both halves of "
        "an enrollment code (closed test benches only: the four-eyes rule is then off).")
    operator_action_ttl_hours: float = Field(
        default=72.0, gt=0, le=8760, description="A proposal not approved within this time can no longer be.")
    # Credentials (exchange/security/keys.py, exchange/security/credentials.py).
    enrollment_code_ttl_hours: float = Field(
        default=72.0, gt=0, le=8760, description="An enrollment code must be used within this time after its "
        "second half was issued (the approval); then it expires and a new one needs two operators again.")
    credential_secret: SecretStr | None = Field(
        default=None, description="Key from which API-key secrets and enrollment-code halves are derived (so a "
        "retry shows the same secret; the database keeps only digests); never logged.")
    credential_secret_file: Path | None = Field(
        default=None, description="File with that key (64 hex digits). Neither set: <data_dir>/credential.key, "
        "made on first start.")
    rate_limit_per_second: float = Field(
        default=2000.0, ge=0, description="Token bucket refill per API key; 0 disables per-key limits.")
    rate_limit_burst: int = Field(default=4000, ge=1, description="Token bucket size per API key.")
    anonymous_rate_limit_per_second: float = Field(
        default=1000.0, ge=0, description="Per client address, for requests without a valid key; 0 disables.")
    anonymous_rate_limit_burst: int = Field(default=2000, ge=1)
    signature_max_skew_seconds: int = Field(
        default=300, ge=1, le=3600, description="Signed instructions must be timestamped within this many seconds.")
    # Operations: metrics (api/metrics.py, api/edge.py), backups (exchange/core/backup.py).
    access_log: bool = Field(default=False, description="One INFO line per request (envx.access: method, path, "
                             "status, milliseconds, with the request id).")
    metrics_enabled: bool = Field(default=True, description="Serve Prometheus metrics at /metrics.")
    metrics_allowed_addresses: str = Field(
        default="", max_length=4000, description="Comma-separated client IP addresses or networks (CIDR) that "
        "may scrape /metrics without a key (the Prometheus host); anyone else needs an operator's or auditor's "
        "API key.")
    wal_archive_dir: Path | None = Field(
        default=None, description="Continuous WAL archiving of the embedded PostgreSQL into this directory "
        "(for `envx restore --until`); the last published checkpoint is copied there too. Unset: no archiving.")

    @field_validator("metrics_allowed_addresses")
    @classmethod
    def _addresses(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                ipaddress.ip_network(item.strip(), strict=False)  # ValueError: refused at start
        return value


    @property
    def witness_list(self) -> tuple[tuple[str, str], ...]:
        """(verifier key, URL prefix) of each configured witness."""
        out = []
        for item in self.witnesses.split(","):
            if item.strip():
                key, _, url = item.strip().partition(" ")
                out.append((key.strip(), url.strip().rstrip("/")))
        return tuple(out)

    @property
    def webhook_allowed_host_list(self) -> tuple[str, ...]:
        return tuple(h.strip() for h in self.webhook_allowed_hosts.split(",") if h.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
