"""Test beds, oracles and fixtures for the tests, benchmarks and validation scripts. Not part
of the installed package: nothing under ``isplit/`` imports from here."""
