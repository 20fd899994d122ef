"""A small Python client for apps: heartbeat sessions, orders, refunds, scan links."""

from sdk.client import ApiError, BillingClient
from sdk.heartbeat import HeartbeatSession

__all__ = ["ApiError", "BillingClient", "HeartbeatSession"]
