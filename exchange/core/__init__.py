"""The runtime and what every domain needs: settings, database, errors, units, idempotency, time, jobs."""
