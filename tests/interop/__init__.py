"""Interoperability tests: x402sim against the official x402 SDKs."""
