"""The harness's trust material: the keys, registrations and signatures the trust cases work with.

Job: everything the ``*.trust.*`` cases need beyond payments, made from the run's seed so a run is
repeatable and a target can be configured once:

* **AP2** (``ap2``): a conformance *user* key (P-256) that issues the open Payment Mandates, and a
  conformance *agent* key that closes them. A server under test must trust the user key: its public
  JWK is given to server targets as ``AP2_TRUSTED_USER_JWK``.
* **Web Bot Auth** (``web-bot-auth``): a conformance agent key (Ed25519) that signs the harness's
  requests (RFC 9421, tag ``web-bot-auth``, covering ``@authority`` and ``Signature-Agent``). Its JWKS
  is given as ``WEB_BOT_AUTH_JWKS``, and served on loopback at ``WEB_BOT_AUTH_DIRECTORY_URL`` +
  ``/.well-known/http-message-signatures-directory`` (the ``Signature-Agent`` the harness sends).
* **ERC-8004** (``erc8004``): agents registered on the harness chain's identity registry (at its
  genesis address); client targets get ``ERC8004_IDENTITY_REGISTRY`` and
  ``ERC8004_REPUTATION_REGISTRY`` (CAIP-10, ``eip155:<chainId>:<address>``) and read them over
  ``EVM_RPC_URL``.

Rules:

* A target *advertises* a feature by configuration (``RunOptions.trust``, the CLI's ``--trust``, a
  built-in target's ``trust``); a server advertises AP2 also by declaring ``extensions["ap2"]`` in its
  402. Cases of a feature the target does not advertise are skipped, so every other target is judged
  as before. Web Bot Auth cannot be detected from behaviour (a server that lets unsigned requests
  through looks like one that does not enforce signatures), so it is configuration only.
* Keys are test keys, seeded by the text ``x402sim-conformance:<seed>:<label>`` (labels ``ap2-user``,
  ``ap2-agent``, ``web-bot-auth``) through ``trust.mandates.new_key`` and ``trust.signatures.agent_key``:
  the same seed gives the same keys on every run. ``material(seed)`` is their public part, as
  ``x402sim conformance trust-material`` prints it.
* Mandate ids and closed-mandate nonces are fresh on every run (not seeded): a long-running target
  keeps its mandates' budgets and spent nonces across runs, and must not see the same ones twice.
* Times in signatures and mandates are wall-clock seconds: a target checks them against its own
  clock, not the chain's.
* Writes to the chain (registering an agent, setting its wallet) are signed transactions sent over
  the harness's JSON-RPC, like any other party's; the chain mines each one at once.
"""

from __future__ import annotations

import base64
import json
import random
import time
from dataclasses import dataclass
from functools import cached_property

from eth_utils import to_checksum_address

from ..evm.contracts import IDENTITY_REGISTRY_ADDRESS, REPUTATION_REGISTRY_ADDRESS
from .asgi import send_json, send_raw, serve_lifespan

ERC8004, AP2, WEB_BOT_AUTH = "erc8004", "ap2", "web-bot-auth"
FEATURES = (ERC8004, AP2, WEB_BOT_AUTH)
DIRECTORY_APP = "agent-directory"
MANDATE_SLACK = 60  # seconds an open mandate is issued before now (clock differences)
MANDATE_LIFETIME = 3600


def features(names) -> frozenset[str]:
    """``names`` (an iterable, ``all`` allowed) as a set of known trust features; ``ValueError``
    naming an unknown one."""
    chosen: set[str] = set()
    for name in names or ():
        name = str(name).strip().lower()
        if name == "all":
            chosen.update(FEATURES)
        elif name in FEATURES:
            chosen.add(name)
        else:
            raise ValueError(f"unknown trust feature {name!r}; expected one of {', '.join(FEATURES)} or all")
    return frozenset(chosen)


def _seed(seed: int, label: str) -> str:
    return f"x402sim-conformance:{seed}:{label}"


def wall_now() -> int:
    return int(time.time())


@dataclass
class TrustKit:
    """The trust keys of a run with ``seed``, and the loopback URL of its agent key directory."""

    seed: int = 0
    directory_url: str = ""

    # -- keys ---------------------------------------------------------------------------------------

    @cached_property
    def user_key(self):
        """The AP2 user (mandate issuer) a server under test must trust."""
        from ..trust.mandates import new_key

        return new_key(_seed(self.seed, "ap2-user"))

    @cached_property
    def mandate_agent_key(self):
        """The AP2 agent key an open mandate names in ``cnf``; it signs the closed mandates."""
        from ..trust.mandates import new_key

        return new_key(_seed(self.seed, "ap2-agent"))

    @cached_property
    def stranger_user_key(self):
        """An AP2 user key no target is told to trust."""
        from ..trust.mandates import new_key

        return new_key(_seed(self.seed, "ap2-stranger"))

    @cached_property
    def bot_key(self):
        """The Web Bot Auth agent key a server under test must know."""
        from ..trust.signatures import agent_key

        return agent_key(_seed(self.seed, "web-bot-auth"))

    @cached_property
    def stranger_bot_key(self):
        """An Ed25519 agent key published nowhere."""
        from ..trust.signatures import agent_key

        return agent_key(_seed(self.seed, "web-bot-auth-stranger"))

    # -- public material ------------------------------------------------------------------------------

    def user_jwk(self) -> dict:
        from ..trust.mandates import public_jwk

        return public_jwk(self.user_key)

    def jwks(self) -> dict:
        from ..trust.signatures import jwks

        return jwks([self.bot_key])

    @property
    def signature_agent(self) -> str:
        """The ``Signature-Agent`` origin the harness names: its directory on loopback."""
        return self.directory_url or "http://127.0.0.1"

    def env(self, role: str, chain_id: int | None = None) -> dict[str, str]:
        """The trust variables a target of ``role`` gets (see the module docstring)."""
        if role == "server":
            return {
                "AP2_TRUSTED_USER_JWK": json.dumps(self.user_jwk(), separators=(",", ":")),
                "WEB_BOT_AUTH_JWKS": json.dumps(self.jwks(), separators=(",", ":")),
                "WEB_BOT_AUTH_DIRECTORY_URL": self.signature_agent,
            }
        if role == "client" and chain_id is not None:
            return {
                "ERC8004_IDENTITY_REGISTRY": f"eip155:{chain_id}:{IDENTITY_REGISTRY_ADDRESS}",
                "ERC8004_REPUTATION_REGISTRY": f"eip155:{chain_id}:{REPUTATION_REGISTRY_ADDRESS}",
            }
        return {}

    def directory_app(self):
        """An ASGI app serving the agent key directory (JWKS) at the Web Bot Auth well-known path."""
        from ..trust.signatures import DIRECTORY_MEDIA_TYPE, DIRECTORY_PATH

        async def app(scope, receive, send) -> None:
            if scope["type"] == "lifespan":
                return await serve_lifespan(receive, send)
            if scope["type"] != "http":
                return
            if scope["path"] != DIRECTORY_PATH:
                return await send_json(send, 404, {"error": f"the key directory is at {DIRECTORY_PATH}"})
            body = json.dumps(self.jwks()).encode()
            headers = [
                (b"content-type", DIRECTORY_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            await send_raw(send, 200, headers, body)

        return app

    # -- Web Bot Auth ---------------------------------------------------------------------------------

    def signer(self, *, key=None, protocol: str | None = None, expires_in: int | None = None):
        """An ``AgentSigner`` for the conformance agent (or ``key``), naming the harness's directory."""
        from ..trust.signatures import WEB_BOT_AUTH as TAG
        from ..trust.signatures import AgentSigner

        return AgentSigner(
            key or self.bot_key,
            protocol=protocol or TAG,
            signature_agent=self.signature_agent,
            expires_in=expires_in,
        )

    def signature_headers(
        self, method: str, url, headers=(), *, signer=None, now: int | None = None
    ) -> list[tuple[str, str]]:
        """The ``Signature-Input``, ``Signature`` and ``Signature-Agent`` lines signing a request to
        ``url`` (an ``httpx.URL`` or a string) with ``signer`` (default: the conformance agent) at
        ``now`` (default: the wall clock)."""
        import httpx

        url = httpx.URL(str(url))
        authority = url.netloc.decode()
        path = url.raw_path.decode() or "/"
        signed = (signer or self.signer()).sign(
            method, authority, path, list(headers), wall_now() if now is None else now, scheme=url.scheme
        )
        names = {"signature", "signature-input", "signature-agent"}
        return [(k, v) for k, v in signed if k.lower() in names]

    def sign_request(self, request) -> None:
        """Sign an ``httpx.Request`` in place with the conformance agent (the recorder's default)."""
        for name in ("signature", "signature-input", "signature-agent"):
            request.headers.pop(name, None)
        for name, value in self.signature_headers(request.method, request.url, request.headers.items()):
            request.headers[name] = value

    # -- AP2 ------------------------------------------------------------------------------------------

    def open_mandate(
        self,
        *,
        pay_to: list[str],
        network: str,
        asset: str,
        amount_range: tuple[int, int],
        budget: int,
        uses: int = 10,
        user_key=None,
        issued_at: int | None = None,
        lifetime: int = MANDATE_LIFETIME,
        rng: random.Random | None = None,
    ) -> str:
        """An open Payment Mandate by the conformance user (or ``user_key``) for the conformance
        agent: amounts in ``amount_range`` (atomic units), at most ``budget`` in all over ``uses``
        payments, to the payees ``pay_to``, in ``asset`` on ``network``. A new mandate id each time
        (from ``rng``, else fresh randomness), so every case has its own budget."""
        from ..trust import mandates as ap2

        issued = (wall_now() - MANDATE_SLACK) if issued_at is None else issued_at
        low, high = amount_range
        constraints = {
            ap2.AMOUNT_RANGE: {"min": low, "max": high},
            ap2.BUDGET: {"max": budget},
            ap2.AGENT_RECURRENCE: {"frequency": "ON_DEMAND", "max_occurrences": uses},
            ap2.ALLOWED_PAYEES: list(pay_to),
            ap2.ALLOWED_INSTRUMENTS: [ap2.instrument_id(network, to_checksum_address(asset))],
        }
        mandate_id = "conformance-" + (rng or random.Random()).randbytes(8).hex()
        return ap2.open_payment_mandate(
            user_key or self.user_key,
            agent_key=self.mandate_agent_key,
            constraints=constraints,
            issued_at=issued,
            expires_at=issued + lifetime,
            mandate_id=mandate_id,
            rng=rng,
        )

    def close_mandate(
        self,
        open_mandate: str,
        *,
        pay_to: str,
        amount: int,
        network: str,
        asset: str,
        payer: str,
        resource: str,
        rng: random.Random | None = None,
    ):
        """The conformance agent's closed mandate for one payment: a ``MandateChain``."""
        from ..trust.mandates import close_payment_mandate

        return close_payment_mandate(
            open_mandate,
            self.mandate_agent_key,
            payee=pay_to,
            amount=amount,
            asset=to_checksum_address(asset),
            network=network,
            payer=payer,
            resource=resource,
            now=wall_now() - 5,
            rng=rng,
        )


def tampered_signature(token: str) -> str:
    """``token`` (an SD-JWT presentation) with one bit of its issuer signature flipped."""
    jwt, sep, rest = token.partition("~")
    head, payload, signature = jwt.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    return f"{head}.{payload}.{forged}{sep}{rest}"


@dataclass(frozen=True)
class RegisteredAgent:
    """An ERC-8004 agent the harness registered: its id, owner and payment wallet (``agentWallet``)."""

    agent_id: int
    owner: str
    wallet: str


def register_agent(harness, label: str = "agent") -> RegisteredAgent:
    """Register a fresh agent on the harness chain, owned by a fresh account, and make a second fresh
    account its ``agentWallet`` (so the owner and the wallet differ, as they may)."""
    from ..evm import erc8004

    owner = harness.funded_account(usdc=0, eth=10**18, label=f"{label}-owner")
    wallet = harness.new_account(f"{label}-wallet")
    agent_id = erc8004.register(harness.chain, owner.key, f"https://agent.invalid/{label}")
    erc8004.set_agent_wallet(harness.chain, owner.key, agent_id, wallet.key)
    return RegisteredAgent(agent_id, owner.address, wallet.address)


def material(seed: int = 0) -> dict:
    """What a third-party target is configured with to run the trust cases at ``seed`` (the
    directory URL is the harness's, known once it runs: given to command targets in their env)."""
    kit = TrustKit(seed)
    return {
        "seed": seed,
        "AP2_TRUSTED_USER_JWK": kit.user_jwk(),
        "WEB_BOT_AUTH_JWKS": kit.jwks(),
        "ERC8004_IDENTITY_REGISTRY": f"eip155:<chainId>:{IDENTITY_REGISTRY_ADDRESS}",
        "ERC8004_REPUTATION_REGISTRY": f"eip155:<chainId>:{REPUTATION_REGISTRY_ADDRESS}",
    }
