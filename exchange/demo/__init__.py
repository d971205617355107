"""The demo data of public cases, loaded through the same services users call."""
