"""The markets: rules and amendments, sequencers, orders, listings, block deals, auctions, sessions, market data."""
