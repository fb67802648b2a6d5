"""Reliability and security: faults, bad input, secrets (issue 7). See docs/reliability.md."""
