"""Security around the API: rate limits, signed instructions, the audit trail, input bounds, documented problems."""
