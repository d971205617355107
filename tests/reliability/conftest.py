"""Short versions of the reliability campaigns (tests/campaigns), for CI: a few minutes in all."""
