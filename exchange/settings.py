"""Configuration, from the environment (prefix ENVX_) or a .env file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    origin: str = Field(default="envx.example/registry", description="Checkpoint origin line (log identity).")
    writer_max_batch: int = Field(default=2048, ge=1, le=100_000)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    scheduler: bool = Field(default=True, description="Run session jobs (open/close/expiry) on the calendar.")
    signing_key: SecretStr | None = Field(
        default=None, description="Checkpoint signing key (C2SP signer key string, PRIVATE+KEY+...); never logged.")
    signing_key_file: Path | None = Field(
        default=None, description="Signing key file. Neither set: <data_dir>/signing.key, made on first start.")
    checkpoint_interval_seconds: float = Field(
        default=1.0, ge=0, le=3600, description="Under load, sign at most one checkpoint per interval.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
