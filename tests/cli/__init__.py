"""Tests of the command line (a package, so its conftest does not shadow the root one)."""
