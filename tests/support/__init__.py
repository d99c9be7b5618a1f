"""Helpers shared by the tests (fixtures stay in the conftest.py files, which import from here)."""
