"""Webhooks: endpoints, signed deliveries with retries, and the dispatcher process."""
