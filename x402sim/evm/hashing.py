"""Keccak-256, the Ethereum hash, through safe-pysha3's C implementation.

eth-hash's default backend (pycryptodome) goes through ctypes and costs about four times as much
per call; a simulated payment hashes a dozen times. ``keccak`` takes bytes and returns the 32-byte
digest, like ``eth_hash.auto.keccak`` on bytes (the test suite checks they agree).
"""

from __future__ import annotations

from sha3 import keccak_256


def keccak(data: bytes) -> bytes:
    digest: bytes = keccak_256(data).digest()
    return digest
