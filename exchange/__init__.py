"""The application: one sub-package per domain (see README, How it is built)."""
