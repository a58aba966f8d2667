"""Signed agent requests (RFC 9421 HTTP Message Signatures): Web Bot Auth and Visa's Trusted Agent Protocol.

An agent signs each request it sends with an Ed25519 key; an edge (or origin) verifies the signature
against a directory of public keys and learns which agent is asking. Two profiles share the machinery:

* **Web Bot Auth** (IETF draft-meunier-webbotauth-httpsig-protocol-02, which folded in the directory
  draft): tag ``web-bot-auth``; covered ``@authority`` (or ``@target-uri``) and the ``Signature-Agent``
  member ``"signature-agent";key="<label>"``; parameters ``created``, ``expires``, ``keyid`` (the
  RFC 7638 SHA-256 thumbprint of the key's JWK, base64url), ``alg="ed25519"``, ``nonce``. The
  ``Signature-Agent`` header is a Structured Fields dictionary ``<label>="<origin>"`` pointing at the
  agent's JWKS, served at ``/.well-known/http-message-signatures-directory`` as
  ``application/http-message-signatures-directory+json``. The legacy bare-string form is accepted.
* **Trusted Agent Protocol** (Visa, github.com/visa/trusted-agent-protocol): tags
  ``agent-browser-auth`` (browsing) and ``agent-payer-auth`` (paying); covered ``@authority`` and
  ``@path``; ``created``, ``expires``, ``keyid``, ``alg``, and a fresh ``nonce`` on every request;
  at most 8 minutes (480 s) between ``created`` and ``expires``.

Rules:

* Sans-IO and clock-free: every time is the caller's ``now`` (unix seconds); nothing here reads the
  wall clock or touches the network (a virtual-time simulation signs and verifies with the same code).
* ``SignatureVerifier.verify`` raises ``SignatureRefused`` with one code of ``REFUSAL_CODES``; the checks
  run in the order of ``CHECKS``. The nonce is recorded only after the signature verified, so a forged
  request cannot burn an honest agent's nonce. Nonces are remembered until their signature expires;
  a signature carrying a nonce may not live longer than ``nonce_ttl`` (``too_long``), which bounds the
  memory by the request rate times ``nonce_ttl``.
* A key is looked up by ``keyid``; a request is attributed to its ``Signature-Agent`` only when the
  ``KeyDirectory`` got that key from that agent's directory (``source``): a key learnt elsewhere verifies
  the request, but then it is known by its thumbprint alone (the draft's "(URL, key) pair" rule).
* Responses: ``ResponseSigner`` signs a server's x402 answers as the x402 ``http-message-signatures``
  extension describes (x402-foundation/x402, specs/extensions/http-message-signatures.md): covered
  ``@status``, the x402 header it carries (``payment-required`` or ``payment-response``),
  ``"@authority";req`` and ``"@path";req``; ``created``, ``expires``, ``keyid``, tag ``x402-response``.
  ``verify_response`` checks one (a client pinning the terms it was shown).
* Deviations, deliberately: ``http://`` directory origins are accepted (the laboratory runs on loopback;
  the draft wants https); TAP's sample code writes ``keyId``, which is not a valid Structured Fields key,
  so both profiles use RFC 9421's ``keyid``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import random
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import cryptography.exceptions
import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from http_sf.types import BareItemType, ParamsType

from ..errors import Refused

WEB_BOT_AUTH = "web-bot-auth"
AGENT_BROWSER_AUTH = "agent-browser-auth"
AGENT_PAYER_AUTH = "agent-payer-auth"
TAP_TAGS = (AGENT_BROWSER_AUTH, AGENT_PAYER_AUTH)
PROTOCOLS = (WEB_BOT_AUTH, *TAP_TAGS)
ALGORITHM = "ed25519"
DIRECTORY_PATH = "/.well-known/http-message-signatures-directory"
DIRECTORY_MEDIA_TYPE = "application/http-message-signatures-directory+json"
SIGNATURE_AGENT = "Signature-Agent"

# Signers' default lifetimes, and the longest a verifier accepts (Web Bot Auth recommends at most 24 h;
# TAP allows 8 minutes).
DEFAULT_EXPIRES_IN = {WEB_BOT_AUTH: 60, AGENT_BROWSER_AUTH: 480, AGENT_PAYER_AUTH: 480}
MAX_VALIDITY = {WEB_BOT_AUTH: 24 * 3600, AGENT_BROWSER_AUTH: 480, AGENT_PAYER_AUTH: 480}
# What each profile must cover: every inner tuple is "one of these".
REQUIRED_COMPONENTS = {
    WEB_BOT_AUTH: (("@authority", "@target-uri"), ("signature-agent",)),
    AGENT_BROWSER_AUTH: (("@authority",), ("@path",)),
    AGENT_PAYER_AUTH: (("@authority",), ("@path",)),
}
NONCE_REQUIRED = frozenset(TAP_TAGS)
SIGNATURE_PARAMS = frozenset({"alg", "created", "expires", "keyid", "nonce", "tag"})
MAX_DIRECTORY_KEYS = 64

# The refusal codes, in the order ``verify`` checks them.
CHECKS = (
    ("unsigned", "no Signature-Input or Signature header"),
    ("malformed", "the signature headers, a parameter or a covered component cannot be read"),
    ("wrong_tag", "no signature carries a tag this verifier accepts"),
    ("missing_keyid", "Signature-Input has no keyid"),
    ("unsupported_algorithm", "alg names an algorithm other than ed25519"),
    ("created_in_future", "created is later than now (plus max_skew)"),
    ("expired", "expires is earlier than now"),
    ("too_long", "expires - created exceeds the profile's maximum (or nonce_ttl, with a nonce)"),
    ("missing_component", "a component the profile requires is not covered"),
    ("unknown_key", "keyid is not in the key directory"),
    ("bad_signature", "the signature does not verify over the covered components"),
    ("nonce_reused", "the nonce was already used by this key and could still verify"),
)
REFUSAL_CODES = tuple(code for code, _ in CHECKS)

_SIGNATURE_HEADERS = ("signature", "signature-input")

# What http_sf.parse gives for a Structured Fields dictionary: it is typed as any structured value, but
# the parser builds every member as a (value, parameters) pair, the value an item or an inner list.
_InnerList = list[tuple[BareItemType, ParamsType]]
_Member = tuple[BareItemType | _InnerList, ParamsType]


class SignatureRefused(Refused):
    """A request's signature was refused; ``code`` is one of ``REFUSAL_CODES``."""

    def __init__(self, code: str, message: str) -> None:
        if code not in REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.problem = message


# -- keys and directories --------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def agent_key(seed: str | bytes) -> Ed25519PrivateKey:
    """A deterministic Ed25519 key for ``seed`` (a test key: the same seed, the same agent, every run)."""
    raw = seed.encode() if isinstance(seed, str) else bytes(seed)
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"x402sim-agent-key\x00" + raw).digest())


def _public(key: Ed25519PublicKey | Ed25519PrivateKey) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, Ed25519PublicKey):
        return key
    raise TypeError(f"expected an Ed25519 key, got {type(key).__name__}")


def jwk_of(key: Ed25519PublicKey | Ed25519PrivateKey) -> dict:
    """The public JWK (RFC 8037 OKP/Ed25519) of ``key``, with ``kid`` = its thumbprint; never the
    private part, even when given a private key."""
    raw = _public(key).public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
    return {**jwk, "kid": thumbprint(jwk), "use": "sig"}


_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 JWK SHA-256 thumbprint, base64url without padding: the hash of the key's required
    members, in lexicographic order, as JSON without whitespace."""
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty", ""))
    if members is None:
        raise ValueError(f"JWK kty {jwk.get('kty')!r}: expected one of {', '.join(_THUMBPRINT_MEMBERS)}")
    missing = [m for m in members if not isinstance(jwk.get(m), str)]
    if missing:
        raise ValueError(f"JWK ({jwk['kty']}) lacks {', '.join(missing)}")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def keyid_of(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The Web Bot Auth ``keyid`` of ``key``: its JWK thumbprint."""
    return jwk_of(key)["kid"]


def public_key_of(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """The Ed25519 public key of an OKP JWK; ValueError naming the problem (a ``kid`` other than the
    thumbprint is one: the directory draft ties them)."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError(f"JWK is kty={jwk.get('kty')!r} crv={jwk.get('crv')!r}, not OKP Ed25519")
    x = jwk.get("x")
    try:
        raw = _unb64url(x) if isinstance(x, str) else b""
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("JWK x is not 32 base64url bytes")
    if "d" in jwk:
        raise ValueError("JWK carries a private key (d); a directory publishes public keys only")
    kid = jwk.get("kid")
    if kid is not None and kid != thumbprint(jwk):
        raise ValueError(f"JWK kid {kid!r} is not the key's thumbprint")
    return Ed25519PublicKey.from_public_bytes(raw)


def jwks(keys: Iterable[Ed25519PublicKey | Ed25519PrivateKey]) -> dict:
    """The directory document ``{"keys": [JWK, ...]}`` of ``keys`` (public parts only)."""
    return {"keys": [jwk_of(k) for k in keys]}


def agent_identifier(url: str, kind: str = "directory") -> str | None:
    """What a ``Signature-Agent`` value identifies, normalised: for the ``directory`` type the origin
    (``scheme://host[:port]``, default port dropped; the well-known path is accepted too), for
    ``jwks_uri``/``cimd`` the URL without query and fragment. None when it is not an http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    if kind == "directory":
        if parts.path not in ("", "/", DIRECTORY_PATH) or parts.query or parts.fragment:
            return None
        return f"{scheme}://{host}"
    return f"{scheme}://{host}{parts.path or '/'}"


class KeyDirectory:
    """Public keys by ``keyid``, each with the agent directories (``source`` identifiers, see
    ``agent_identifier``) that published it. Thread-safe."""

    def __init__(self, keys: Iterable[Ed25519PublicKey | Mapping] = (), *, source: str | None = None):
        self._lock = threading.Lock()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._sources: dict[str, set[str]] = {}
        for key in keys:
            self.add(key, source=source)

    def add(self, key: Ed25519PublicKey | Ed25519PrivateKey | Mapping, *, source: str | None = None) -> str:
        """Add a key (a key object or a JWK), published by the directory ``source`` if given; its keyid."""
        public = public_key_of(key) if isinstance(key, Mapping) else _public(key)
        keyid = keyid_of(public)
        normalised = _source(source)
        with self._lock:
            self._keys[keyid] = public
            sources = self._sources.setdefault(keyid, set())
            if normalised is not None:
                sources.add(normalised)
        return keyid

    @classmethod
    def from_jwks(cls, document: Mapping, *, source: str | None = None) -> KeyDirectory:
        directory = cls()
        directory.load_jwks(document, source=source)
        return directory

    def load_jwks(self, document: Mapping, *, source: str | None = None) -> list[str]:
        """Read a directory document. With ``source``, it is that agent's newest word: its keys that are
        no longer listed stop being attributed to it (and are dropped if nothing else vouches for them).
        Entries that are not Ed25519 keys are skipped; a document that is not a JWKS, or lists more than
        ``MAX_DIRECTORY_KEYS`` keys, is a ValueError."""
        listed = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(listed, list):
            raise ValueError('a key directory is a JSON object with a "keys" array')
        if len(listed) > MAX_DIRECTORY_KEYS:
            raise ValueError(f"key directory lists {len(listed)} keys, more than {MAX_DIRECTORY_KEYS}")
        keys = []
        for entry in listed:
            if isinstance(entry, Mapping):
                try:
                    keys.append(public_key_of(entry))
                except ValueError:
                    continue
        normalised = _source(source)
        added = [keyid_of(k) for k in keys]
        if normalised is not None:
            with self._lock:
                for keyid, sources in list(self._sources.items()):
                    if normalised in sources and keyid not in added:
                        sources.discard(normalised)
                        if not sources:
                            del self._sources[keyid]
                            del self._keys[keyid]
        for key in keys:
            self.add(key, source=normalised)
        return added

    def get(self, keyid: str) -> Ed25519PublicKey | None:
        with self._lock:
            return self._keys.get(keyid)

    def sources(self, keyid: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._sources.get(keyid, ()))

    def keyids(self) -> list[str]:
        with self._lock:
            return list(self._keys)

    def jwks(self) -> dict:
        with self._lock:
            return jwks(self._keys.values())

    def __contains__(self, keyid: object) -> bool:
        with self._lock:
            return keyid in self._keys

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)


def _source(source: str | None) -> str | None:
    if source is None:
        return None
    normalised = agent_identifier(source)
    if normalised is None:
        raise ValueError(f"key source {source!r}: expected the origin of an agent directory")
    return normalised


# -- the message shape http_message_signatures reads -----------------------------------------------


class _Fields:
    """Header field lines in order, with the mapping operations the library reads and writes."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self.pairs = [(str(k), str(v)) for k, v in pairs]

    def items(self):
        return list(self.pairs)

    def __iter__(self):
        return iter([k for k, _ in self.pairs])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k, _ in self.pairs)

    def __getitem__(self, name: str) -> str:
        values = [v for k, v in self.pairs if k.lower() == name.lower()]
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __setitem__(self, name: str, value: str) -> None:
        self.pairs = [(k, v) for k, v in self.pairs if k.lower() != name.lower()]
        self.pairs.append((name, value))

    def __delitem__(self, name: str) -> None:
        kept = [(k, v) for k, v in self.pairs if k.lower() != name.lower()]
        if len(kept) == len(self.pairs):
            raise KeyError(name)
        self.pairs = kept


class _Request:
    def __init__(self, method: str, scheme: str, authority: str, path: str, headers):
        if not authority:
            raise ValueError("the request has no authority (Host) to sign")
        if not path.startswith("/"):
            raise ValueError(f"path {path!r} must start with /")
        self.method = method.upper()
        self.url = f"{scheme}://{authority}{path}"
        self.headers = _Fields(headers)


def _header(headers, name: str) -> str | None:
    values = [v for k, v in headers if k.lower() == name.lower()]
    return ", ".join(values) if values else None


def _when(now: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, tz=datetime.UTC)


def _agent_component(label: str) -> str:
    params: ParamsType = {"key": label}
    return http_sf.ser(("signature-agent", params))


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, keyid: str, key):
        self.keyid, self.key = keyid, key

    def resolve_private_key(self, key_id: str):
        if key_id != self.keyid:
            raise KeyError(key_id)
        return self.key

    def resolve_public_key(self, key_id: str):
        return self.key if key_id == self.keyid else None


# -- signing ---------------------------------------------------------------------------------------


class AgentSigner:
    """Signs an agent's requests under one profile (``protocol``): ``sign`` returns the request's
    headers with ``Signature-Input``, ``Signature`` and (with ``signature_agent``) ``Signature-Agent``
    set, replacing older ones. ``components`` overrides what is covered (to study refusals)."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        *,
        protocol: str = WEB_BOT_AUTH,
        signature_agent: str | None = None,
        expires_in: int | None = None,
        rng: random.Random | None = None,
        label: str = "sig1",
        components: Iterable[str] | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("an agent signs with an Ed25519 private key (see agent_key)")
        if protocol == WEB_BOT_AUTH and signature_agent is None and components is None:
            raise ValueError(
                "web-bot-auth needs signature_agent: the URL of the agent's key directory (the draft "
                "requires Signature-Agent on every signed request)"
            )
        if signature_agent is not None and agent_identifier(signature_agent) is None:
            raise ValueError(f"signature_agent {signature_agent!r}: expected the origin of a key directory")
        self.key = key
        self.keyid = keyid_of(key)
        self.protocol = protocol
        self.signature_agent = signature_agent
        self.expires_in = DEFAULT_EXPIRES_IN[protocol] if expires_in is None else expires_in
        if self.expires_in <= 0:
            raise ValueError(f"expires_in must be positive, got {self.expires_in}")
        self.label = label
        if components is None:
            base = ("@authority",) if protocol == WEB_BOT_AUTH else ("@authority", "@path")
            agent = (_agent_component(label),) if signature_agent is not None else ()
            components = (*base, *agent)
        self.components = tuple(components)
        self.rng = rng
        self._signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(self.keyid, key)
        )

    def jwk(self) -> dict:
        return jwk_of(self.key)

    def _nonce(self) -> str:
        raw = self.rng.randbytes(32) if self.rng is not None else secrets.token_bytes(32)
        return base64.b64encode(raw).decode()

    def sign(
        self, method: str, authority: str, path: str, headers, now: int, *, scheme: str = "https"
    ) -> tuple[tuple[str, str], ...]:
        """``headers`` with this agent's signature over the request ``method scheme://authority path``,
        created at ``now``; ValueError if the request cannot be signed (no authority, a bad path)."""
        drop = {*_SIGNATURE_HEADERS, "signature-agent"}
        kept = [(k, v) for k, v in headers if k.lower() not in drop]
        if self.signature_agent is not None:
            kept.append((SIGNATURE_AGENT, http_sf.ser({self.label: (self.signature_agent, {})})))
        message = _Request(method, scheme, authority, path, kept)
        try:
            self._signer.sign(
                message,
                key_id=self.keyid,
                created=_when(now),
                expires=_when(now + self.expires_in),
                nonce=self._nonce(),
                label=self.label,
                tag=self.protocol,
                covered_component_ids=self.components,
            )
        except HTTPMessageSignaturesException as exc:
            raise ValueError(f"cannot sign {method} {authority}{path}: {exc}") from None
        return tuple(message.headers.pairs)


# -- verifying -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedAgent:
    """Who signed a request: ``keyid``, under ``tag``, and the ``Signature-Agent`` identifier the
    request is attributed to (None when the directory does not vouch for the claim in
    ``claimed_agent``)."""

    keyid: str
    tag: str
    signature_agent: str | None
    label: str = ""
    created: int = 0
    expires: int = 0
    nonce: str | None = None
    claimed_agent: str | None = None

    @property
    def name(self) -> str:
        return self.signature_agent or self.keyid


class NonceStore:
    """(keyid, nonce) pairs seen, each kept until its signature expires; check-and-record is atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], int] = {}
        self._prune_at = 1024

    def admit(self, key: tuple[str, str], until: int, now: int) -> bool:
        """Whether ``key`` is new (it is remembered until ``until``); False if it is still remembered."""
        with self._lock:
            expiry = self._seen.get(key)
            if expiry is not None and expiry >= now:
                return False
            self._seen[key] = until
            if len(self._seen) >= self._prune_at:
                self._seen = {k: e for k, e in self._seen.items() if e >= now}
                self._prune_at = max(1024, 2 * len(self._seen))
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)


class _WallClockFree(HTTPMessageVerifier):
    """The library's verifier with its own time checks off: ``SignatureVerifier`` checks ``created`` and
    ``expires`` against the caller's ``now`` before the library sees the message."""

    def validate_created_and_expires(self, sig_input, max_age=None):
        return None


def _verify_ed25519(message, what: str, signed: str, label: str, tag: str, keyid: str, key) -> None:
    """Verify ``message``'s signature ``label`` (tag ``tag``) by ``key``: ``bad_signature`` when the
    Ed25519 check fails, ``malformed`` when the signed ``what`` cannot be rebuilt."""
    verifier = _WallClockFree(signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(keyid, key))
    try:
        verifier.verify(message, max_age=None, expect_tag=tag, expect_label=label)
    except InvalidSignature as exc:
        if isinstance(exc.__cause__, cryptography.exceptions.InvalidSignature):
            raise SignatureRefused("bad_signature", f"the {what} by {keyid} does not verify") from None
        raise SignatureRefused("malformed", f"cannot rebuild the signed {signed}: {exc}") from None
    except HTTPMessageSignaturesException as exc:
        raise SignatureRefused("malformed", f"cannot rebuild the signed {signed}: {exc}") from None


class SignatureVerifier:
    """Verifies requests signed under ``tags`` against ``directory``; see ``CHECKS`` for the order.

    ``max_skew``: seconds ``created`` may be ahead of ``now``. ``nonce_ttl``: seconds a nonce is
    remembered at most, hence the longest a signature carrying one may live. ``max_validity``: the
    longest ``expires - created`` per tag (default ``MAX_VALIDITY``; a mapping overrides some tags,
    None in it lifts the limit; an int applies to every tag)."""

    def __init__(
        self,
        directory: KeyDirectory,
        *,
        tags: Iterable[str] = (WEB_BOT_AUTH,),
        max_skew: int = 0,
        nonce_ttl: int = 480,
        max_validity: Mapping[str, int | None] | int | None = None,
    ) -> None:
        self.directory = directory
        self.tags = tuple(tags)
        unknown = [t for t in self.tags if t not in PROTOCOLS]
        if not self.tags or unknown:
            raise ValueError(f"tags: expected some of {', '.join(PROTOCOLS)}, got {list(self.tags)}")
        if max_skew < 0 or nonce_ttl <= 0:
            raise ValueError("max_skew must be >= 0 and nonce_ttl > 0")
        self.max_skew = max_skew
        self.nonce_ttl = nonce_ttl
        if isinstance(max_validity, Mapping):
            self.max_validity = {**MAX_VALIDITY, **max_validity}
        elif max_validity is None:
            self.max_validity = dict(MAX_VALIDITY)
        else:
            self.max_validity = dict.fromkeys(PROTOCOLS, max_validity)
        self.nonces = NonceStore()

    def verify(
        self, method: str, authority: str, path: str, headers, now: int, *, scheme: str = "https"
    ) -> VerifiedAgent:
        headers = tuple(headers)
        label, members, params = self._select(headers)
        tag = params["tag"]
        keyid = params.get("keyid")
        if not isinstance(keyid, str) or not keyid:
            raise SignatureRefused("missing_keyid", f"signature {label!r} has no keyid parameter")
        alg = params.get("alg")
        if alg is not None and alg != ALGORITHM:
            raise SignatureRefused("unsupported_algorithm", f"alg {alg!r} is not supported; only {ALGORITHM}")
        created, expires, nonce = self._times(label, tag, params)
        if created > now + self.max_skew:
            raise SignatureRefused("created_in_future", f"created {created} is after now ({now})")
        if expires < now:
            raise SignatureRefused("expired", f"the signature expired at {expires}, now is {now}")
        limit = self.max_validity.get(tag)
        if nonce is not None:
            limit = self.nonce_ttl if limit is None else min(limit, self.nonce_ttl)
        if limit is not None and expires - created > limit:
            raise SignatureRefused(
                "too_long", f"valid for {expires - created} s (created to expires); {tag} allows {limit} s"
            )
        covered = {value for value, _ in members}
        for one_of in REQUIRED_COMPONENTS[tag]:
            if not covered.intersection(one_of):
                raise SignatureRefused(
                    "missing_component", f"{tag} requires {' or '.join(one_of)} to be covered"
                )
        key = self.directory.get(keyid)
        if key is None:
            raise SignatureRefused("unknown_key", f"keyid {keyid} is not in the key directory")
        self.check_signature(method, scheme, authority, path, headers, label, tag, keyid, key)
        if nonce is not None and not self.nonces.admit((keyid, nonce), expires, now):
            raise SignatureRefused("nonce_reused", f"nonce {nonce!r} was already used by {keyid}")
        claimed = _claimed_agent(headers, members)
        attributed = claimed if claimed is not None and claimed in self.directory.sources(keyid) else None
        return VerifiedAgent(keyid, tag, attributed, label, created, expires, nonce, claimed)

    def _select(self, headers):
        inputs, signatures = _header(headers, "Signature-Input"), _header(headers, "Signature")
        if inputs is None and signatures is None:
            raise SignatureRefused("unsigned", "the request carries no Signature-Input or Signature")
        if inputs is None or signatures is None:
            missing = "Signature-Input" if inputs is None else "Signature"
            raise SignatureRefused("malformed", f"the request has no {missing} header")
        try:
            parsed_inputs = cast(dict[str, _Member], http_sf.parse(inputs.encode(), tltype="dictionary"))
            parsed_signatures = cast(
                dict[str, _Member], http_sf.parse(signatures.encode(), tltype="dictionary")
            )
        except (ValueError, UnicodeError) as exc:
            raise SignatureRefused("malformed", f"unreadable signature headers: {exc}") from None
        if set(parsed_inputs) != set(parsed_signatures):
            raise SignatureRefused("malformed", "Signature-Input and Signature name different labels")
        seen_tags: list[BareItemType | None] = []
        for label, (members, params) in parsed_inputs.items():
            if not isinstance(members, list):
                raise SignatureRefused("malformed", f"Signature-Input {label!r} is not an inner list")
            value = parsed_signatures[label][0]
            if not isinstance(value, bytes):
                raise SignatureRefused("malformed", f"Signature {label!r} is not a byte sequence")
            tag = params.get("tag")
            seen_tags.append(tag)
            if tag in self.tags:
                return label, members, params
        named = ", ".join(repr(t) for t in seen_tags)
        raise SignatureRefused(
            "wrong_tag", f"signature tags {named}; this verifier accepts {', '.join(self.tags)}"
        )

    def _times(self, label: str, tag: str, params: Mapping) -> tuple[int, int, str | None]:
        unknown = set(params) - SIGNATURE_PARAMS
        if unknown:
            raise SignatureRefused(
                "malformed", f"signature {label!r} has unknown parameters {sorted(unknown)}"
            )
        created, expires, nonce = params.get("created"), params.get("expires"), params.get("nonce")
        for name, value in (("created", created), ("expires", expires)):
            if type(value) is not int:
                raise SignatureRefused("malformed", f"signature {label!r} needs an integer {name} parameter")
        created, expires = cast(int, created), cast(int, expires)  # both checked just above
        if expires <= created:
            raise SignatureRefused("malformed", f"expires {expires} is not after created {created}")
        if nonce is not None and (not isinstance(nonce, str) or not nonce):
            raise SignatureRefused("malformed", "nonce must be a non-empty string")
        if nonce is None and tag in NONCE_REQUIRED:
            raise SignatureRefused("malformed", f"{tag} requires a nonce parameter")
        return created, expires, nonce

    def check_signature(self, method, scheme, authority, path, headers, label, tag, keyid, key) -> None:
        try:
            message = _Request(method, scheme, authority, path, headers)
        except ValueError as exc:
            raise SignatureRefused("malformed", str(exc)) from None
        _verify_ed25519(message, "signature", "message", label, tag, keyid, key)


# -- signed responses (the x402 http-message-signatures extension) ---------------------------------

X402_RESPONSE_TAG = "x402-response"
X402_HEADERS = ("payment-required", "payment-response")


class _Response:
    def __init__(self, status: int, headers, request: _Request):
        self.status_code = status
        self.headers = _Fields(headers)
        self.request = request


class ResponseSigner:
    """Signs a server's answers that carry an x402 header (``PAYMENT-REQUIRED`` or ``PAYMENT-RESPONSE``),
    binding them to the request's authority and path, so a client can tell the terms or the receipt
    were not altered on the way."""

    def __init__(self, key: Ed25519PrivateKey, *, expires_in: int = 300, label: str = "resp") -> None:
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("a server signs with an Ed25519 private key")
        self.key, self.keyid, self.expires_in, self.label = key, keyid_of(key), expires_in, label
        self._signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(self.keyid, key)
        )

    def jwk(self) -> dict:
        return jwk_of(self.key)

    def sign(
        self, status: int, headers, method: str, authority: str, path: str, now: int, *, scheme: str = "https"
    ) -> tuple[tuple[str, str], ...]:
        """``headers`` of a response with this server's signature; unchanged when no x402 header is
        among them (nothing to pin) or the request cannot be named."""
        headers = tuple(headers)
        x402 = [name for name in X402_HEADERS if _header(headers, name) is not None]
        if not x402:
            return headers
        kept = [(k, v) for k, v in headers if k.lower() not in _SIGNATURE_HEADERS]
        try:
            response = _Response(status, kept, _Request(method, scheme, authority, path, ()))
            self._signer.sign(
                response,
                key_id=self.keyid,
                created=_when(now),
                expires=_when(now + self.expires_in),
                label=self.label,
                tag=X402_RESPONSE_TAG,
                covered_component_ids=("@status", *x402, '"@authority";req', '"@path";req'),
            )
        except (ValueError, HTTPMessageSignaturesException):
            return headers
        return tuple(response.headers.pairs)


def verify_response(
    directory: KeyDirectory,
    status: int,
    headers,
    method: str,
    authority: str,
    path: str,
    now: int,
    *,
    scheme: str = "https",
) -> str:
    """The keyid that signed this x402 response for the request ``method authority path``; raises
    ``SignatureRefused`` (``unsigned``, ``malformed``, ``wrong_tag``, ``missing_keyid``,
    ``created_in_future``, ``expired``, ``missing_component``, ``unknown_key``, ``bad_signature``)."""
    headers = tuple(headers)
    inputs = _header(headers, "Signature-Input")
    if inputs is None or _header(headers, "Signature") is None:
        raise SignatureRefused("unsigned", "the response carries no signature")
    try:
        parsed = cast(dict[str, _Member], http_sf.parse(inputs.encode(), tltype="dictionary"))
    except ValueError as exc:
        raise SignatureRefused("malformed", f"unreadable Signature-Input: {exc}") from None
    found = [(label, members, params) for label, (members, params) in parsed.items()]
    chosen = next(((lb, m, p) for lb, m, p in found if p.get("tag") == X402_RESPONSE_TAG), None)
    if chosen is None:
        raise SignatureRefused("wrong_tag", f"no signature is tagged {X402_RESPONSE_TAG}")
    label, members, params = chosen
    if not isinstance(members, list):
        raise SignatureRefused("malformed", f"signature {label} does not list its covered components")
    keyid = params.get("keyid")
    if not isinstance(keyid, str):
        raise SignatureRefused("missing_keyid", "the response signature has no keyid")
    created, expires = params.get("created"), params.get("expires")
    if type(created) is not int or (expires is not None and type(expires) is not int):
        raise SignatureRefused("malformed", "created and expires must be integers")
    if created > now:
        raise SignatureRefused("created_in_future", f"created {created} is after now ({now})")
    if expires is not None and expires < now:
        raise SignatureRefused("expired", f"the response signature expired at {expires}")
    covered = {(value, tuple(sorted(p.items()))) for value, p in members}
    needed = [("@status", ()), ("@authority", (("req", True),)), ("@path", (("req", True),))]
    needed += [(name, ()) for name in X402_HEADERS if _header(headers, name) is not None]
    missing = [name for name, p in needed if (name, p) not in covered]
    if missing:
        raise SignatureRefused("missing_component", f"the response signature does not cover {missing}")
    key = directory.get(keyid)
    if key is None:
        raise SignatureRefused("unknown_key", f"keyid {keyid} is not in the key directory")
    try:
        response = _Response(status, headers, _Request(method, scheme, authority, path, ()))
    except ValueError as exc:
        raise SignatureRefused("malformed", str(exc)) from None
    _verify_ed25519(response, "response signature", "response", label, X402_RESPONSE_TAG, keyid, key)
    return keyid


def signature_agents(headers) -> list[tuple[str | None, str, str]]:
    """The ``Signature-Agent`` members of ``headers`` as ``(label, URL, type)`` (label None for the legacy
    bare-string form); members that are not strings are left out, an unreadable header gives []."""
    value = _header(headers, SIGNATURE_AGENT)
    if value is None:
        return []
    try:
        if value.lstrip().startswith('"'):
            url, params = cast(_Member, http_sf.parse(value.encode(), tltype="item"))
            members: dict[str | None, _Member] = {None: (url, params)}
        else:
            members = cast(dict[str | None, _Member], http_sf.parse(value.encode(), tltype="dictionary"))
    except (ValueError, UnicodeError):
        return []
    found: list[tuple[str | None, str, str]] = []
    for label, (url, params) in members.items():
        if isinstance(url, str):
            found.append((label, url, str(params.get("type", "directory"))))
    return found


def _claimed_agent(headers, members) -> str | None:
    """The identifier of the ``Signature-Agent`` member the signature covers (None if none is covered
    or it names nothing this module can resolve)."""
    keys = {params.get("key") for value, params in members if value == "signature-agent"}
    for label, url, kind in signature_agents(headers):
        if label in keys and kind in ("directory", "jwks_uri", "cimd"):
            return agent_identifier(url, kind)
    return None


__all__ = [
    "AGENT_BROWSER_AUTH",
    "AGENT_PAYER_AUTH",
    "ALGORITHM",
    "CHECKS",
    "DIRECTORY_MEDIA_TYPE",
    "DIRECTORY_PATH",
    "PROTOCOLS",
    "REFUSAL_CODES",
    "TAP_TAGS",
    "WEB_BOT_AUTH",
    "X402_RESPONSE_TAG",
    "AgentSigner",
    "KeyDirectory",
    "NonceStore",
    "ResponseSigner",
    "SignatureRefused",
    "SignatureVerifier",
    "VerifiedAgent",
    "agent_identifier",
    "agent_key",
    "jwk_of",
    "jwks",
    "keyid_of",
    "public_key_of",
    "signature_agents",
    "thumbprint",
    "verify_response",
]
