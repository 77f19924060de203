"""The HTTP API: commands and queries for schools and trusts, behind bearer tokens."""
