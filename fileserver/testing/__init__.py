"""Test kits a backend's own test suite can run (see contracts.py)."""
