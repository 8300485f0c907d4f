"""Webhooks: signing (`signing`), the submit-time fields (`request_fields`) and sending
(`dispatcher`). Receivers check a delivery with `verify`."""

from openremix.webhooks.signing import WebhookVerificationError, sign, verify

__all__ = ["WebhookVerificationError", "sign", "verify"]
