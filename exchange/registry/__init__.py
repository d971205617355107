"""Who holds what: participants and their subjects, instruments and kinds, issuance, transfers, cash, expiry."""
