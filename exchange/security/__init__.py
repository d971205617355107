"""Who may act: API keys, enrollment, signed-instruction keys, four-eyes operator actions, the audit trail."""
