"""The edge's pay-per-crawl policy: who may fetch at all, and who pays (sans-IO).

Modelled on Cloudflare's pay per crawl, with x402 as the payment: a crawler that proves who it is
with an RFC 9421 signature (Web Bot Auth, or Visa TAP's tags) is charged the route's price through
the usual x402 402; an agent the site allows is served free; a request without a signature is refused
(403), as is one whose signature is refused. ``ResourceServer.handle`` asks ``admit`` before anything
else and reads ``action``, ``status`` and ``reason``:

==========================================  ========  ======  ===============================
request                                     action    status  then
==========================================  ========  ======  ===============================
no signature, ``block_unsigned`` (default)  block     403     nothing is verified or settled
no signature, ``block_unsigned=False``      charge    --      the route's normal x402 flow
signature refused (any code)                block     403     reason names the refusal code
verified, keyid or agent URL in ``allow``   free      200     the handler runs, nothing paid
verified, anyone else                       charge    402     the route's price, paid by x402
==========================================  ========  ======  ===============================

Rules: no clock and no I/O (``now`` is the caller's); ``allow`` holds keyids or ``Signature-Agent``
URLs, and a URL matches only a request the key directory attributes to it (see
``signatures.VerifiedAgent.signature_agent``), so claiming someone else's URL buys nothing.
``stats`` counts verdicts by action and refusals by code (``refused:<code>``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .signatures import SignatureRefused, SignatureVerifier, agent_identifier

BLOCK, FREE, CHARGE = "block", "free", "charge"
ACTIONS = (BLOCK, FREE, CHARGE)


@dataclass(frozen=True)
class CrawlVerdict:
    """What the edge does with one request: ``action`` (block, free or charge), the HTTP ``status`` it
    implies, a ``reason`` a person can read, the ``agent`` (attributed URL or keyid, None when
    unknown) and, for a refused signature, its ``code``."""

    action: str
    status: int
    reason: str
    agent: str | None = None
    code: str | None = None


class CrawlPolicy:
    """Admits requests by their RFC 9421 signature, verified by ``verifier``."""

    def __init__(
        self, verifier: SignatureVerifier, *, allow: Iterable[str] = (), block_unsigned: bool = True
    ) -> None:
        self.verifier = verifier
        self.block_unsigned = block_unsigned
        self.allow = frozenset(_allowed(entry) for entry in allow)
        self.stats: Counter = Counter()
        self._lock = threading.Lock()

    def admit(self, method: str, authority: str, path: str, headers, now: int) -> CrawlVerdict:
        try:
            agent = self.verifier.verify(method, authority, path, headers, now)
        except SignatureRefused as exc:
            if exc.code == "unsigned":
                if self.block_unsigned:
                    verdict = CrawlVerdict(
                        BLOCK,
                        403,
                        "a signed request is required here (RFC 9421: Web Bot Auth or Visa TAP)",
                        code=exc.code,
                    )
                else:
                    verdict = CrawlVerdict(CHARGE, 402, "unsigned request: the route's price applies")
            else:
                verdict = CrawlVerdict(
                    BLOCK, 403, f"signature refused ({exc.code}): {exc.problem}", code=exc.code
                )
            return self._count(verdict)
        if agent.keyid in self.allow or (
            agent.signature_agent is not None and agent.signature_agent in self.allow
        ):
            return self._count(CrawlVerdict(FREE, 200, f"allowed agent {agent.name}", agent.name))
        return self._count(
            CrawlVerdict(CHARGE, 402, f"verified agent {agent.name} pays to crawl", agent.name)
        )

    def _count(self, verdict: CrawlVerdict) -> CrawlVerdict:
        with self._lock:
            self.stats[verdict.action] += 1
            if verdict.code is not None:
                self.stats[f"refused:{verdict.code}"] += 1
        return verdict


def _allowed(entry: str) -> str:
    """An allow-list entry as the verifier reports it: a URL becomes its agent identifier, anything
    else is a keyid."""
    entry = entry.strip()
    if entry.startswith(("http://", "https://")):
        identifier = agent_identifier(entry)
        if identifier is None:
            raise ValueError(f"allow entry {entry!r}: expected the origin of an agent's key directory")
        return identifier
    if not entry:
        raise ValueError("allow entry is empty")
    return entry


__all__ = ["ACTIONS", "BLOCK", "CHARGE", "FREE", "CrawlPolicy", "CrawlVerdict"]
