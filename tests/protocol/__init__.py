"""Tests of x402sim.protocol; ``strategies`` is reusable by other test folders."""
