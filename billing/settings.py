"""The one settings class, read from the environment (and an optional `.env`).

Secrets (API keys, read keys, share signing keys) have no defaults in code: an
unset key list means the matching endpoints refuse every request.
"""

from __future__ import annotations

from dataclasses import fields
from urllib.parse import urlparse

import redis
from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from billing.events import MAX_INTERVAL_MS
from billing.keys import Keys
from billing.redis_runtime import client
from state.config import RuleSettings

# The rule settings and their defaults are defined once, in state/config.py.
_RULES = RuleSettings()


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BILLING_", env_file=".env", extra="ignore", frozen=True
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "BILLING_REDIS_URL"),
    )
    # Prefix for every key this service owns, public streams included; lets tests
    # and several deployments share one Redis database.
    key_prefix: str = ""
    # The Redis at REDIS_URL is a Redis Cluster (any one node's URL): keys carry hash
    # tags (billing.keys) and the clients follow the cluster's slots. A cluster has
    # one database, and the public stream names then carry the tag.
    redis_cluster: bool = False
    api_keys: str = ""
    read_keys: str = ""
    share_keys: str = ""
    scanner_header: str = "X-User-Id"
    # The scanner header is honoured only from these proxies (comma-separated CIDRs).
    trusted_proxies: str = ""
    # Scans written through the public page, per share and per client address
    # (the `limits` package's notation: "60/minute", "5/second", ...).
    scan_rate_per_share: str = "60/minute"
    scan_rate_per_client: str = "120/minute"
    # Hosts a share's activity_url may point to (comma-separated); empty: any host.
    activity_hosts: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_batch_events: int = Field(1000, gt=0)

    attribution_window_ms: int = Field(_RULES.attribution_window_ms, ge=0)
    report_interval_ms: int = Field(10_000, gt=0, le=MAX_INTERVAL_MS)
    max_segment_ms: int = Field(_RULES.max_segment_ms, gt=0)
    clock_skew_ms: int = Field(_RULES.clock_skew_ms, ge=0)
    idle_timeout_factor: int = Field(_RULES.idle_timeout_factor, gt=0)
    late_grace_ms: int = Field(_RULES.late_grace_ms, ge=0)
    holding_period_ms: int = Field(_RULES.holding_period_ms, ge=0)
    retention_ms: int = Field(_RULES.retention_ms, ge=0)

    # Live flows: how far the watermark trails the server clock, so that no event
    # with an earlier ts can still be in flight when a session is closed as idle.
    watermark_lag_ms: int = Field(2_000, ge=0)
    # The sequencer's facts (seen ids, orders' items) are kept R plus this margin of
    # log time behind where the flows may resume (flows.fact_sweeper), so an event up
    # to this far behind the log's time still finds what SPEC counts; the sink's applied
    # marks are kept the same way. The read side (views, output streams) lives R plus
    # this margin by Redis's clock.
    facts_ttl_margin_ms: int = Field(86_400_000, ge=0)
    # How long a sharer's statement entries are kept (the statement endpoint answers
    # for ranges within it); balances themselves are kept for as long as they are not 0.
    statement_retention_ms: int = Field(34_560_000_000, gt=0)
    # Trim the input stream behind the flows, keeping at least retention_ms of log.
    trim_input: bool = True
    epoch_interval_ms: int = Field(1_000, gt=0)
    recovery_dir: str = ""
    # A recovery directory that has never run, on a deployment whose flows have read
    # input before, is refused (a lost volume would re-read the stream and may bill
    # again): true lets one such start go ahead (README, "Upgrading").
    allow_fresh_start: bool = False

    # Webhooks (SPEC "Interfaces"; the `billing webhooks` dispatcher).
    # Endpoints on loopback, link-local or private addresses are refused unless true.
    webhook_allow_private: bool = False
    # The retry back-off after each failed attempt (ms, comma-separated): when it is
    # spent, the delivery is `failed`. The default is 5 s, 5 min, 30 min, 2 h, 5 h,
    # 10 h, 10 h, as the best anchors do.
    webhook_retry_schedule_ms: str = "5000,300000,1800000,7200000,18000000,36000000,36000000"
    webhook_timeout_ms: int = Field(5_000, gt=0)
    # Requests in flight to one endpoint from one dispatcher.
    webhook_concurrency_per_endpoint: int = Field(16, gt=0)
    # How long a claimed delivery may stay unanswered before another dispatcher may
    # take it over (a dispatcher killed mid-delivery).
    webhook_lease_ms: int = Field(30_000, gt=0)
    # How long deliveries and their attempts are listed (past the last attempt).
    webhook_log_retention_ms: int = Field(604_800_000, gt=0)

    @property
    def webhook_schedule(self) -> list[int]:
        return [int(part) for part in _split(self.webhook_retry_schedule_ms)]

    @property
    def api_key_list(self) -> list[str]:
        return _split(self.api_keys)

    @property
    def activity_host_list(self) -> list[str]:
        return [h.lower() for h in _split(self.activity_hosts)]

    @property
    def read_key_list(self) -> list[str]:
        return _split(self.read_keys)

    @property
    def share_key_pairs(self) -> list[tuple[str, str]]:
        pairs = []
        for item in _split(self.share_keys):
            kid, sep, secret = item.partition(":")
            if not sep or not kid or not secret:
                raise ValueError("BILLING_SHARE_KEYS entries must be kid:secret")
            pairs.append((kid, secret))
        return pairs

    @model_validator(mode="after")
    def _rules_are_consistent(self) -> Settings:
        self.rules()  # SPEC: a retention shorter than a window it covers is refused here
        schedule = self.webhook_schedule  # ValueError (so a validation error) if not ints
        if any(step <= 0 for step in schedule):
            raise ValueError("webhook_retry_schedule_ms: every step must be > 0")
        if self.webhook_log_retention_ms <= sum(schedule) + self.webhook_lease_ms:
            raise ValueError("webhook_log_retention_ms must outlast the retry schedule")
        if self.redis_cluster:
            if "{" in self.key_prefix or "}" in self.key_prefix:
                raise ValueError("key_prefix: no braces on a cluster (the keys' hash tags)")
            if urlparse(self.redis_url).path.strip("/") not in ("", "0"):
                raise ValueError("REDIS_URL: a Redis Cluster has only database 0")
        return self

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix, cluster=self.redis_cluster)

    def rules(self) -> RuleSettings:
        return RuleSettings(**{f.name: getattr(self, f.name) for f in fields(RuleSettings)})

    def redis_client(self, patient: bool = False) -> redis.Redis:
        """A client for this deployment's Redis: a cluster's when `redis_cluster`
        (`patient` as for billing.redis_runtime.client)."""
        return client(self.redis_url, patient=patient, cluster=self.redis_cluster)
