"""Test suite of x402sim."""
