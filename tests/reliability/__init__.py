"""Short versions of the reliability campaigns (tests/campaigns), for CI: about a minute in all."""
