"""Pledge registrations (质押登记): filing and lock, claims, valuation and margin calls, enforcement, outbox."""
