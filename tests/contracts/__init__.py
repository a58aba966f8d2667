"""Tests of the Vyper contracts and their committed artifacts."""
