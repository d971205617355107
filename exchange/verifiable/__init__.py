"""The verifiable ledger's wiring in the app: tiles and checkpoints, the signing key, proofs and receipts."""
