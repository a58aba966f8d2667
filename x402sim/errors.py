"""The root of x402sim's exceptions (a leaf module: it imports nothing of x402sim)."""


class X402simError(Exception):
    """Every error x402sim raises on purpose derives from this."""
