"""RFC 9421 agent signatures (Web Bot Auth, Visa TAP) and the pay-per-crawl policy, without sockets.

Independent oracles: RFC 8037's Ed25519 key and its published thumbprint (computed here by hand too),
RFC 9421's Ed25519 test key, and the Web Bot Auth draft's Ed25519 test vectors (dictionary and legacy
``Signature-Agent``). Every refusal code has a test that fails if its check is removed."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading

import http_sf
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from x402sim.trust.crawl import CrawlPolicy
from x402sim.trust.signatures import (
    AGENT_BROWSER_AUTH,
    AGENT_PAYER_AUTH,
    DIRECTORY_PATH,
    PROTOCOLS,
    REFUSAL_CODES,
    TAP_TAGS,
    WEB_BOT_AUTH,
    AgentSigner,
    KeyDirectory,
    NonceStore,
    ResponseSigner,
    SignatureRefused,
    SignatureVerifier,
    agent_identifier,
    agent_key,
    jwk_of,
    jwks,
    keyid_of,
    public_key_of,
    thumbprint,
    verify_response,
)

NOW = 1_750_000_000
AGENT_URL = "https://crawler.example"
HOST = "shop.example"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_from_d(d: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(b64url_decode(d))


def signer(protocol=WEB_BOT_AUTH, key=None, **kwargs):
    kwargs.setdefault("signature_agent", AGENT_URL if protocol == WEB_BOT_AUTH else None)
    return AgentSigner(key or agent_key("alice"), protocol=protocol, rng=random.Random(7), **kwargs)


def verifier(*keys, tags=(WEB_BOT_AUTH,), source=AGENT_URL, **kwargs):
    directory = KeyDirectory()
    for key in keys or (agent_key("alice"),):
        directory.add(key, source=source)
    return SignatureVerifier(directory, tags=tags, **kwargs)


def signed(protocol=WEB_BOT_AUTH, *, now=NOW, method="GET", path="/articles/1", headers=(), **kwargs):
    return signer(protocol, **kwargs).sign(method, HOST, path, [("Host", HOST), *headers], now)


def refusal(v: SignatureVerifier, headers, *, method="GET", path="/articles/1", authority=HOST, now=NOW):
    with pytest.raises(SignatureRefused) as caught:
        v.verify(method, authority, path, headers, now)
    return caught.value.code


def header(headers, name):
    return next(v for k, v in headers if k.lower() == name.lower())


def replace_header(headers, name, value):
    return tuple((k, value if k.lower() == name.lower() else v) for k, v in headers)


def edit_input(headers, edit):
    """``headers`` with the (only) Signature-Input member's inner list and parameters passed through
    ``edit(members, params)``."""
    parsed = http_sf.parse(header(headers, "Signature-Input").encode(), tltype="dictionary")
    ((label, (members, params)),) = parsed.items()
    members, params = edit(list(members), dict(params))
    return replace_header(headers, "Signature-Input", http_sf.ser({label: (members, params)}))


def with_params(**changes):
    def edit(members, params):
        for name, value in changes.items():
            if value is None:
                params.pop(name, None)
            else:
                params[name] = value
        return members, params

    return edit


# -- keys, thumbprints, directories ------------------------------------------------------------------

RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"  # RFC 8037 appendix A.3
RFC9421_ED25519_D = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU"  # RFC 9421 appendix B.1.4
RFC9421_ED25519_KEYID = "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U"  # the Web Bot Auth draft's keyid


def test_keyid_is_the_rfc7638_thumbprint_of_rfc8037s_key():
    # The oracle, by hand: SHA-256 of the required members in lexicographic order, no whitespace.
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"' + RFC8037_X + '"}'
    by_hand = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert by_hand == RFC8037_THUMBPRINT
    key = key_from_d(RFC8037_D)
    jwk = jwk_of(key)
    assert jwk["x"] == RFC8037_X and jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    assert thumbprint(jwk) == keyid_of(key) == jwk["kid"] == RFC8037_THUMBPRINT
    # optional members do not change it; the key material does
    assert thumbprint({**jwk, "use": "sig", "alg": "ed25519"}) == RFC8037_THUMBPRINT
    assert thumbprint({**jwk, "x": RFC8037_X[:-1] + "p"}) != RFC8037_THUMBPRINT
    assert keyid_of(key_from_d(RFC9421_ED25519_D)) == RFC9421_ED25519_KEYID


def test_a_directory_publishes_public_keys_only():
    key = agent_key("alice")
    document = jwks([key, agent_key("bob")])
    assert [set(k) for k in document["keys"]] == [{"kty", "crv", "x", "kid", "use"}] * 2
    private = key.private_bytes_raw()
    text = json.dumps(document)
    assert '"d"' not in text and base64.urlsafe_b64encode(private).rstrip(b"=").decode() not in text
    directory = KeyDirectory.from_jwks(document, source=AGENT_URL)
    assert keyid_of(key) in directory and len(directory) == 2
    assert directory.sources(keyid_of(key)) == {AGENT_URL}
    with pytest.raises(ValueError, match="private"):
        public_key_of({**jwk_of(key), "d": RFC8037_D})
    with pytest.raises(ValueError, match="thumbprint"):
        public_key_of({**jwk_of(key), "kid": "something-else"})
    with pytest.raises(ValueError, match="keys"):
        KeyDirectory.from_jwks({"keys": "nope"})


def test_agent_keys_are_deterministic_and_distinct():
    assert keyid_of(agent_key("alice")) == keyid_of(agent_key(b"alice"))
    assert keyid_of(agent_key("alice")) != keyid_of(agent_key("bob"))


def test_a_newer_directory_replaces_what_its_origin_vouched_for():
    old, new, local = agent_key("old"), agent_key("new"), agent_key("local")
    directory = KeyDirectory.from_jwks(jwks([old]), source=AGENT_URL)
    directory.add(local)
    directory.load_jwks(jwks([new]), source=AGENT_URL)
    assert keyid_of(old) not in directory  # rotated out
    assert keyid_of(new) in directory and keyid_of(local) in directory


@pytest.mark.parametrize(
    ("url", "identifier"),
    [
        ("https://Crawler.Example", "https://crawler.example"),
        ("https://crawler.example:443/", "https://crawler.example"),
        ("http://127.0.0.1:8545" + DIRECTORY_PATH, "http://127.0.0.1:8545"),
        ("https://crawler.example/other", None),
        ("ftp://crawler.example", None),
    ],
)
def test_agent_identifiers_are_normalised_origins(url, identifier):
    assert agent_identifier(url) == identifier


# -- the draft's test vectors ----------------------------------------------------------------------

DRAFT_INPUT = (
    'sig2=("@authority" "signature-agent";key="agent2");created=1735689600'
    ';keyid="poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U";alg="ed25519";expires=4889289600'
    ';nonce="n9p433xm+NJ3ph3upfBIGmsuwHw387YV7Q/F+6BSpGCVjYCqQw6rznNA8PVVLySrAWsv0hQtFioQb6E1YsauiA=="'
    ';tag="web-bot-auth"'
)
DRAFT_SIGNATURE = (
    "sig2=:RdNFx5Bj6au3YgAMQL/RzmUlZE8QZLIaXGRpw985hWnwPfMxT228NMk6ehRS1PSl4e8PhbNZACSanGdhEwYCCg==:"
)
LEGACY_INPUT = (
    'sig2=("@authority" "signature-agent");created=1735689600'
    ';keyid="poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U";alg="ed25519";expires=1735693200'
    ';nonce="e8N7S2MFd/qrd6T2R3tdfAuuANngKI7LFtKYI/vowzk4lAZYadIX6wW25MwG7DCT9RUKAJ0qVkU0mEeLElW1qg=="'
    ';tag="web-bot-auth"'
)
LEGACY_SIGNATURE = (
    "sig2=:jdq0SqOwHdyHr9+r5jw3iYZH6aNGKijYp/EstF4RQTQdi5N5YYKrD+mCT1HA1nZDsi6nJKuHxUi/5Syp3rLWBA==:"
)


@pytest.mark.parametrize(
    ("agent_header", "signature_input", "signature", "lifetime"),
    [
        ('agent2="https://signature-agent.test"', DRAFT_INPUT, DRAFT_SIGNATURE, None),
        ('"https://signature-agent.test"', LEGACY_INPUT, LEGACY_SIGNATURE, 3600),
    ],
    ids=["dictionary", "legacy-string"],
)
def test_the_web_bot_auth_drafts_ed25519_vectors_verify(agent_header, signature_input, signature, lifetime):
    headers = (
        ("Signature-Agent", agent_header),
        ("Signature-Input", signature_input),
        ("Signature", signature),
    )
    directory = KeyDirectory([key_from_d(RFC9421_ED25519_D)], source="https://signature-agent.test")
    v = SignatureVerifier(directory, max_validity={WEB_BOT_AUTH: lifetime}, nonce_ttl=10**10)
    agent = v.verify("GET", "example.com", "/", headers, 1735689600)
    assert agent.keyid == RFC9421_ED25519_KEYID and agent.signature_agent == "https://signature-agent.test"
    tampered = replace_header(headers, "Signature-Agent", agent_header.replace("test", "evil"))
    assert refusal(v, tampered, authority="example.com", now=1735689600) == "bad_signature"


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_signed_request_verifies_for_each_protocol(protocol):
    headers = signed(protocol, headers=[("Accept", "text/html")])
    v = verifier(tags=(protocol,))
    agent = v.verify("GET", HOST, "/articles/1", headers, NOW)
    assert agent.keyid == keyid_of(agent_key("alice")) and agent.tag == protocol
    assert agent.created == NOW and agent.expires == NOW + (60 if protocol == WEB_BOT_AUTH else 480)
    assert agent.nonce
    assert agent.signature_agent == (AGENT_URL if protocol == WEB_BOT_AUTH else None)
    assert ("Accept", "text/html") in headers and header(headers, "Host") == HOST
    covered = http_sf.parse(header(headers, "Signature-Input").encode(), tltype="dictionary")["sig1"][0]
    names = [value for value, _ in covered]
    assert names == (
        ["@authority", "signature-agent"] if protocol == WEB_BOT_AUTH else ["@authority", "@path"]
    )


def test_signing_again_replaces_the_old_signature():
    s = signer()
    first = s.sign("GET", HOST, "/a", [("Host", HOST)], NOW)
    second = s.sign("GET", HOST, "/a", first, NOW + 1)
    assert [k for k, _ in second].count("Signature") == 1 and [k for k, _ in second].count(
        "Signature-Agent"
    ) == 1
    assert verifier().verify("GET", HOST, "/a", second, NOW + 1).created == NOW + 1


def test_tap_signs_a_fresh_nonce_every_request():
    s = signer(AGENT_PAYER_AUTH)
    nonces = {
        http_sf.parse(
            header(s.sign("GET", HOST, "/", [], NOW), "Signature-Input").encode(), tltype="dictionary"
        )["sig1"][1]["nonce"]
        for _ in range(20)
    }
    assert len(nonces) == 20


def test_a_claimed_agent_url_counts_only_when_its_directory_published_the_key():
    headers = signed()
    unvouched = SignatureVerifier(KeyDirectory([agent_key("alice")]))  # key known, from nowhere
    agent = unvouched.verify("GET", HOST, "/articles/1", headers, NOW)
    assert agent.signature_agent is None and agent.claimed_agent == AGENT_URL
    other = verifier(source="https://someone-else.example")
    assert other.verify("GET", HOST, "/articles/1", headers, NOW).signature_agent is None


# -- every refusal code ----------------------------------------------------------------------------


def test_the_refusal_codes_are_the_documented_set():
    assert set(REFUSAL_CODES) == {
        "unsigned",
        "malformed",
        "wrong_tag",
        "created_in_future",
        "expired",
        "missing_keyid",
        "missing_component",
        "nonce_reused",
        "unknown_key",
        "bad_signature",
        "unsupported_algorithm",
        "too_long",
    }
    with pytest.raises(ValueError):
        SignatureRefused("something_else", "no")


def test_unsigned():
    assert refusal(verifier(), [("Host", HOST)]) == "unsigned"


@pytest.mark.parametrize(
    "breakage",
    [
        lambda h: replace_header(h, "Signature-Input", "sig1=(((("),
        lambda h: tuple((k, v) for k, v in h if k != "Signature"),
        lambda h: replace_header(h, "Signature", "sig1=:AAAA:, sig9=:AAAA:"),
        lambda h: replace_header(h, "Signature", 'sig1="not bytes"'),
        lambda h: edit_input(h, with_params(created="yesterday")),
        lambda h: edit_input(h, with_params(expires=None)),
        lambda h: edit_input(h, with_params(expires=NOW)),
        lambda h: edit_input(h, with_params(color="blue")),
        lambda h: replace_header(h, "Signature-Agent", "sig1=((("),
    ],
)
def test_malformed(breakage):
    assert refusal(verifier(), breakage(signed())) == "malformed"


def test_malformed_when_tap_has_no_nonce():
    headers = edit_input(signed(AGENT_BROWSER_AUTH), with_params(nonce=None))
    assert refusal(verifier(tags=TAP_TAGS), headers) == "malformed"


def test_wrong_tag():
    assert refusal(verifier(tags=TAP_TAGS), signed(WEB_BOT_AUTH)) == "wrong_tag"
    assert refusal(verifier(), edit_input(signed(), with_params(tag=None))) == "wrong_tag"


def test_missing_keyid():
    assert refusal(verifier(), edit_input(signed(), with_params(keyid=None))) == "missing_keyid"


def test_unsupported_algorithm():
    assert (
        refusal(verifier(), edit_input(signed(), with_params(alg="rsa-pss-sha512")))
        == "unsupported_algorithm"
    )


def test_created_in_future():
    headers = signed(now=NOW + 1)
    assert refusal(verifier(), headers, now=NOW) == "created_in_future"
    assert verifier(max_skew=1).verify("GET", HOST, "/articles/1", headers, NOW).created == NOW + 1


def test_expired():
    headers = signed(AGENT_PAYER_AUTH)
    assert (
        verifier(tags=TAP_TAGS).verify("GET", HOST, "/articles/1", headers, NOW + 480).tag == AGENT_PAYER_AUTH
    )
    assert refusal(verifier(tags=TAP_TAGS), headers, now=NOW + 481) == "expired"


def test_too_long():
    assert refusal(verifier(tags=TAP_TAGS), signed(AGENT_BROWSER_AUTH, expires_in=481)) == "too_long"
    # Web Bot Auth allows a day, but a nonce can only be remembered nonce_ttl seconds
    assert refusal(verifier(), signed(expires_in=24 * 3600)) == "too_long"
    long_memory = verifier(nonce_ttl=24 * 3600)
    assert long_memory.verify("GET", HOST, "/articles/1", signed(expires_in=24 * 3600), NOW)
    assert refusal(long_memory, signed(expires_in=24 * 3600 + 1)) == "too_long"


@pytest.mark.parametrize(
    ("protocol", "components"),
    [
        (WEB_BOT_AUTH, ("@authority",)),  # no Signature-Agent
        (WEB_BOT_AUTH, ("@path", '"signature-agent";key="sig1"')),  # no @authority or @target-uri
        (AGENT_BROWSER_AUTH, ("@authority",)),
        (AGENT_PAYER_AUTH, ("@path",)),
    ],
)
def test_missing_component(protocol, components):
    headers = signed(protocol, components=components)
    assert refusal(verifier(tags=(protocol,)), headers) == "missing_component"


def test_web_bot_auth_may_cover_target_uri_instead_of_authority():
    headers = signed(components=("@target-uri", '"signature-agent";key="sig1"'))
    assert verifier().verify("GET", HOST, "/articles/1", headers, NOW).tag == WEB_BOT_AUTH


def test_unknown_key():
    assert refusal(verifier(agent_key("bob")), signed()) == "unknown_key"


def test_bad_signature():
    headers = signed()
    value = http_sf.parse(header(headers, "Signature").encode(), tltype="dictionary")["sig1"][0]
    flipped = bytes([value[0] ^ 1]) + value[1:]
    forged = replace_header(headers, "Signature", http_sf.ser({"sig1": (flipped, {})}))
    assert refusal(verifier(), forged) == "bad_signature"


def test_nonce_reused_and_a_forgery_does_not_burn_the_nonce():
    headers = signed(AGENT_PAYER_AUTH)
    v = verifier(tags=TAP_TAGS)
    assert refusal(v, headers, path="/elsewhere") == "bad_signature"  # a forgery carrying the nonce
    v.verify("GET", HOST, "/articles/1", headers, NOW)
    assert refusal(v, headers, now=NOW + 10) == "nonce_reused"


def test_one_replay_wins_when_many_threads_race():
    headers = signed(AGENT_PAYER_AUTH)
    v = verifier(tags=TAP_TAGS)
    results: list[str] = []
    start = threading.Barrier(8)

    def race():
        start.wait()
        try:
            v.verify("GET", HOST, "/articles/1", headers, NOW)
            results.append("ok")
        except SignatureRefused as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["nonce_reused"] * 7 + ["ok"]


def test_the_nonce_store_forgets_what_can_no_longer_verify():
    store = NonceStore()
    for i in range(5000):
        assert store.admit(("k", str(i)), until=i + 1, now=i)
    assert len(store) < 2100
    assert not store.admit(("k", "4999"), until=6000, now=4999)
    assert store.admit(("k", "0"), until=6000, now=4999)  # expired long ago: free again


# -- a signature verifies exactly for the request it was made for ----------------------------------

methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"])
labels = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
hosts = st.builds(
    lambda name, tld, port: f"{name}.{tld}" + (f":{port}" if port else ""),
    labels,
    st.sampled_from(["example", "test", "com"]),
    st.one_of(st.none(), st.integers(1, 65535).filter(lambda p: p != 443)),
)
segments = st.from_regex(r"[A-Za-z0-9._~-]{1,12}", fullmatch=True)
paths = st.builds(
    lambda parts, query: "/" + "/".join(parts) + (f"?q={query}" if query else ""),
    st.lists(segments, max_size=4),
    st.one_of(st.none(), segments),
)
extra_headers = st.lists(
    st.tuples(
        st.sampled_from(["Accept", "User-Agent", "X-Trace", "Content-Type"]),
        st.from_regex(r"[ -~]{0,20}", fullmatch=True).map(str.strip),
    ),
    max_size=3,
)
MUTATIONS = ("authority", "path", "method", "header", "signature_agent", "created", "expires", "nonce", "tag")
COVERED = {
    WEB_BOT_AUTH: {"authority", "signature_agent", "created", "expires", "nonce", "tag"},
    AGENT_BROWSER_AUTH: {"authority", "path", "created", "expires", "nonce", "tag"},
    AGENT_PAYER_AUTH: {"authority", "path", "created", "expires", "nonce", "tag"},
}


def mutate(what, method, authority, path, headers):
    if what == "authority":
        authority = "x" + authority
    elif what == "path":
        route, _, query = path.partition("?")
        path = route.rstrip("/") + "/more" + (f"?{query}" if query else "")
    elif what == "method":
        method = "PATCH"
    elif what == "header":
        headers = (*headers, ("X-Added", "later"))
    elif what == "signature_agent":
        headers = (
            replace_header(headers, "Signature-Agent", 'sig1="https://other.example"')
            if any(k == "Signature-Agent" for k, _ in headers)
            else (*headers, ("Signature-Agent", 'sig1="https://other.example"'))
        )
    elif what == "tag":
        headers = edit_input(headers, _swap_tag)
    else:

        def shift(members, params):
            params[what] = params[what] - 1 if what != "nonce" else params[what][::-1] + "x"
            return members, params

        headers = edit_input(headers, shift)
    return method, authority, path, headers


def _swap_tag(members, params):
    swap = {
        AGENT_BROWSER_AUTH: AGENT_PAYER_AUTH,
        AGENT_PAYER_AUTH: AGENT_BROWSER_AUTH,
        WEB_BOT_AUTH: "web-bot-auth2",
    }
    params["tag"] = swap[params["tag"]]
    return members, params


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    protocol=st.sampled_from(PROTOCOLS),
    method=methods,
    authority=hosts,
    path=paths,
    headers=extra_headers,
    what=st.sampled_from(MUTATIONS),
    seed=st.integers(0, 2**32),
)
def test_a_signature_verifies_exactly_for_the_request_it_was_made_for(
    protocol, method, authority, path, headers, what, seed
):
    tags = PROTOCOLS  # a verifier accepting every profile: a changed tag must still not pass
    s = AgentSigner(
        agent_key("alice"),
        protocol=protocol,
        signature_agent=AGENT_URL if protocol == WEB_BOT_AUTH else None,
        rng=random.Random(seed),
    )
    sent = s.sign(method, authority, path, [("Host", authority), *headers], NOW)
    assert verifier(tags=tags).verify(method, authority, path, sent, NOW).tag == protocol
    m, a, p, h = mutate(what, method, authority, path, sent)
    fresh = verifier(tags=tags)
    if what in COVERED[protocol]:
        with pytest.raises(SignatureRefused):
            fresh.verify(m, a, p, h, NOW)
    else:
        assert fresh.verify(m, a, p, h, NOW).keyid == s.keyid


# -- the pay-per-crawl policy ----------------------------------------------------------------------


def policy(**kwargs):
    return CrawlPolicy(verifier(tags=PROTOCOLS), **kwargs)


def test_crawl_policy_verdicts():
    p = policy(allow=[keyid_of(agent_key("carol"))])
    p.verifier.directory.add(agent_key("carol"))
    unsigned = p.admit("GET", HOST, "/a", [("Host", HOST)], NOW)
    assert (unsigned.action, unsigned.status) == (
        "block",
        403,
    ) and "signed request is required" in unsigned.reason
    bad = p.admit("GET", HOST, "/a", edit_input(signed(path="/a"), with_params(alg="hmac")), NOW)
    assert (bad.action, bad.status, bad.code) == ("block", 403, "unsupported_algorithm")
    assert "unsupported_algorithm" in bad.reason
    charged = p.admit("GET", HOST, "/a", signed(path="/a"), NOW)
    assert (charged.action, charged.status, charged.agent) == ("charge", 402, AGENT_URL)
    carol = signed(AGENT_PAYER_AUTH, key=agent_key("carol"), path="/a")
    free = p.admit("GET", HOST, "/a", carol, NOW)
    assert (free.action, free.status) == ("free", 200)
    assert p.stats == {
        "block": 2,
        "charge": 1,
        "free": 1,
        "refused:unsigned": 1,
        "refused:unsupported_algorithm": 1,
    }


def test_unsigned_requests_may_be_charged_instead():
    verdict = policy(block_unsigned=False).admit("GET", HOST, "/a", [("Host", HOST)], NOW)
    assert verdict.action == "charge"


def test_an_allowed_url_admits_only_requests_its_directory_vouches_for():
    p = policy(allow=[AGENT_URL + DIRECTORY_PATH])
    assert p.admit("GET", HOST, "/a", signed(path="/a"), NOW).action == "free"
    # mallory's key is known, but AGENT_URL's directory never published it: claiming the URL buys nothing
    p.verifier.directory.add(agent_key("mallory"), source="https://mallory.example")
    claimed = signed(key=agent_key("mallory"), path="/a")
    assert p.admit("GET", HOST, "/a", claimed, NOW).action == "charge"
    with pytest.raises(ValueError):
        policy(allow=["https://crawler.example/not-a-directory"])


# -- signed x402 answers (the x402 http-message-signatures extension) ------------------------------


def test_a_signed_402_pins_its_terms_to_the_request():
    server = ResponseSigner(agent_key("server"))
    keys = KeyDirectory([server.key])
    answer = server.sign(402, [("PAYMENT-REQUIRED", "eyJ0ZXJtcyI6MX0=")], "GET", HOST, "/a?x=1", NOW)
    covered = http_sf.parse(header(answer, "Signature-Input").encode(), tltype="dictionary")["resp"]
    assert [v for v, _ in covered[0]] == ["@status", "payment-required", "@authority", "@path"]
    assert covered[1]["tag"] == "x402-response"
    assert verify_response(keys, 402, answer, "GET", HOST, "/a?x=1", NOW) == server.keyid
    for status, headers, path in (
        (402, replace_header(answer, "PAYMENT-REQUIRED", "eyJ0ZXJtcyI6Mn0="), "/a"),
        (200, answer, "/a"),
        (402, answer, "/b"),
    ):
        with pytest.raises(SignatureRefused) as caught:
            verify_response(keys, status, headers, "GET", HOST, path, NOW)
        assert caught.value.code == "bad_signature"
    with pytest.raises(SignatureRefused, match="expired"):
        verify_response(keys, 402, answer, "GET", HOST, "/a", NOW + 301)
    with pytest.raises(SignatureRefused, match="unknown_key"):
        verify_response(KeyDirectory(), 402, answer, "GET", HOST, "/a", NOW)
    plain = (("Content-Type", "application/json"),)
    assert server.sign(200, plain, "GET", HOST, "/a", NOW) == plain  # nothing x402 to pin


@pytest.mark.parametrize("member", ["1", '"ab"', "?1"])
def test_a_response_signature_that_lists_no_components_is_malformed_not_a_crash(member):
    answer = (
        ("PAYMENT-REQUIRED", "eyJ0ZXJtcyI6MX0="),
        ("Signature-Input", f'resp={member};tag="x402-response";keyid="k";created={NOW}'),
        ("Signature", "resp=:AAAA:"),
    )
    with pytest.raises(SignatureRefused) as caught:
        verify_response(KeyDirectory(), 402, answer, "GET", HOST, "/a", NOW)
    assert caught.value.code == "malformed"
