"""A small world for the batch-settlement contract tests: a `LocalChain` (the contract and its two
deposit collectors in its genesis), a payer with USDC who approved Permit2, a payer authorizer, two
receivers with one receiver authorizer, a relayer and a stranger; deposits through either collector
with real signatures, sending, event reading, and two test contracts (an EIP-1271 wallet and a
misbehaving deposit collector) compiled on demand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode, encode

from x402sim.evm import LocalChain, Receipt, address_of_key, sign_digest
from x402sim.evm import channels as ch
from x402sim.evm import permit2 as p2
from x402sim.evm.chain import CallResult
from x402sim.evm.contracts import EVM_VERSION
from x402sim.evm.token import selector

BALANCE = 10_000_000
ETH = 10**18
ZERO = "0x" + "00" * 20
BATCH = ch.BATCH_SETTLEMENT_ADDRESS

# A contract wallet: it vouches (EIP-1271) for digests its signer signed, and approves on request.
WALLET_SOURCE = """
# pragma version 0.4.3
signer: public(address)

@deploy
def __init__(signer: address):
    self.signer = signer

@view
@external
def isValidSignature(digest: bytes32, signature: Bytes[256]) -> bytes4:
    if len(signature) == 65:
        v: uint256 = convert(slice(signature, 64, 1), uint256)
        if ecrecover(digest, v, extract32(signature, 0), extract32(signature, 32)) == self.signer:
            return 0x1626ba7e
    return 0xffffffff

@external
def approve(token: address, spender: address, amount: uint256):
    raw_call(token, abi_encode(spender, amount, method_id=method_id("approve(address,uint256)")))
"""

# A deposit collector that misbehaves: mode 0 collects nothing, mode 1 calls back into the
# batch-settlement contract (its settle) while the deposit runs.
BAD_COLLECTOR_SOURCE = """
# pragma version 0.4.3
mode: public(uint256)

@deploy
def __init__(mode: uint256):
    self.mode = mode

@external
def collect(payer: address, token: address, amount: uint256, channelId: bytes32, data: Bytes[2048]):
    if self.mode == 1:
        raw_call(
            msg.sender,
            abi_encode(payer, token, method_id=method_id("settle(address,address)")),
        )
"""


@functools.cache
def compiled(source: str) -> bytes:
    import vyper
    from vyper.compiler.settings import Settings

    out = vyper.compile_code(source, output_formats=["bytecode"], settings=Settings(evm_version=EVM_VERSION))
    return bytes.fromhex(out["bytecode"][2:])


def error(signature: str, *args: int | bytes) -> bytes:
    """Revert data of a custom error: selector and ABI words."""
    words = b"".join(a if isinstance(a, bytes) else a.to_bytes(32, "big") for a in args)
    return selector(signature) + words


@dataclass
class World:
    chain: LocalChain
    keys: dict[str, bytes]
    salt: int = 0
    wallets: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls) -> World:
        chain = LocalChain(seed=11)
        names = ("payer", "payer_auth", "receiver", "receiver2", "receiver_auth", "relayer", "stranger")
        keys = {name: chain.new_key() for name in names}
        grants = [(address_of_key(k), 0, ETH) for k in keys.values()]
        grants[0] = (address_of_key(keys["payer"]), BALANCE, ETH)
        chain.fund_many(grants)
        world = cls(chain, keys)
        world.send("payer", p2.approve_call(p2.PERMIT2_ADDRESS, p2.UINT256_MAX), to=chain.usdc)
        return world

    def addr(self, name: str) -> str:
        if name in self.wallets:
            return self.wallets[name]
        return address_of_key(self.keys[name])

    @property
    def token(self) -> str:
        return self.chain.usdc

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    def config(
        self,
        *,
        payer: str = "payer",
        payer_auth: str | None = "payer_auth",
        receiver: str = "receiver",
        receiver_auth: str = "receiver_auth",
        delay: int = ch.MIN_WITHDRAW_DELAY,
        token: str | None = None,
    ) -> ch.ChannelConfig:
        self.salt += 1
        return ch.ChannelConfig(
            payer=self.addr(payer),
            payer_authorizer=self.addr(payer_auth) if payer_auth else ZERO,
            receiver=self.addr(receiver),
            receiver_authorizer=self.addr(receiver_auth),
            token=token or self.token,
            withdraw_delay=delay,
            salt=self.salt.to_bytes(32, "big"),
        )

    def cid(self, config: ch.ChannelConfig) -> bytes:
        return ch.channel_id(config, self.chain_id)

    # -- sending -----------------------------------------------------------------------------

    def send(self, sender: str, data: bytes, *, to: str = BATCH, gas: int = 3_000_000) -> Receipt:
        tx_hash = self.chain.transact(self.keys[sender], to, data, gas=gas)
        self.chain.mine()
        receipt = self.chain.receipt(tx_hash)
        assert receipt is not None
        return receipt

    def call(self, data: bytes, *, sender: str = "relayer", to: str = BATCH) -> CallResult:
        return self.chain.call(to, data, sender=self.addr(sender))

    def deploy(self, init_code: bytes) -> str:
        receipt = self.send("relayer", init_code, to=None, gas=3_000_000)  # type: ignore[arg-type]
        assert receipt.success and receipt.contract_address
        return receipt.contract_address

    def add_wallet(self, name: str, signer: str) -> str:
        """An EIP-1271 wallet vouching for ``signer``'s signatures, funded and approving Permit2."""
        wallet = self.deploy(compiled(WALLET_SOURCE) + encode(["address"], [self.addr(signer)]))
        self.wallets[name] = wallet
        self.send(
            "payer",
            ch.selector("transfer(address,uint256)") + encode(["address", "uint256"], [wallet, 1_000_000]),
            to=self.token,
        )
        approve = ch.selector("approve(address,address,uint256)") + encode(
            ["address", "address", "uint256"], [self.token, p2.PERMIT2_ADDRESS, p2.UINT256_MAX]
        )
        assert self.send("relayer", approve, to=wallet).success
        return wallet

    # -- deposits ----------------------------------------------------------------------------

    def erc3009_data(
        self, config: ch.ChannelConfig, amount: int, *, salt: int = 1, key: str = "payer"
    ) -> bytes:
        now = self.chain.now
        nonce = ch.erc3009_deposit_nonce(self.cid(config), salt)
        digest = ch.receive_authorization_digest(
            self.chain.domain, config.payer, amount, now - 5, now + 600, nonce
        )
        return ch.erc3009_collector_data(now - 5, now + 600, salt, sign_digest(self.keys[key], digest))

    def permit2_data(
        self,
        config: ch.ChannelConfig,
        amount: int,
        *,
        nonce: int = 1,
        key: str = "payer",
        eip2612: bytes = b"",
    ) -> bytes:
        deadline = self.chain.now + 600
        digest = ch.deposit_witness_digest(
            self.chain_id, config.token, amount, nonce, deadline, self.cid(config)
        )
        return ch.permit2_collector_data(nonce, deadline, sign_digest(self.keys[key], digest), eip2612)

    def deposit(
        self, config: ch.ChannelConfig, amount: int, *, via: str = "eip3009", salt: int | None = None
    ) -> Receipt:
        self.salt += 1
        if via == "eip3009":
            data = self.erc3009_data(config, amount, salt=salt or 10**6 + self.salt)
            collector = ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS
        else:
            data = self.permit2_data(config, amount, nonce=salt or 10**6 + self.salt)
            collector = ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS
        receipt = self.send("relayer", ch.deposit_call(config, amount, collector, data))
        assert receipt.success, receipt.revert_reason
        return receipt

    def voucher(
        self,
        config: ch.ChannelConfig,
        max_claimable: int,
        total: int | None = None,
        *,
        key: str | None = None,
    ) -> ch.VoucherClaim:
        signer = key or ("payer_auth" if config.payer_authorizer != ZERO else "payer")
        signature = ch.sign_voucher(self.keys[signer], self.chain_id, self.cid(config), max_claimable)
        return ch.VoucherClaim(config, max_claimable, signature, max_claimable if total is None else total)

    # -- reads -------------------------------------------------------------------------------

    def state(self, config: ch.ChannelConfig) -> ch.ChannelState:
        return ch.read_channel(self.chain, self.cid(config))

    def receiver_totals(self, receiver: str = "receiver") -> tuple[int, int]:
        return ch.read_receiver(self.chain, self.addr(receiver), self.token)

    def balance(self, who: str) -> int:
        return self.chain.balance_of(who if who.startswith("0x") else self.addr(who))

    def view(self, signature: str, types: list[str], args: list[Any], out: list[str]) -> tuple[Any, ...]:
        result = self.call(ch.selector(signature) + encode(types, args))
        assert result.success, result.revert_reason
        return tuple(decode(out, result.output))


def events(receipt: Receipt, name: str, address: str = BATCH) -> list[tuple[tuple[bytes, ...], bytes]]:
    """(topics after the first, data) of each ``name`` event ``address`` logged."""
    topic = ch.EVENT_TOPICS[name]
    return [
        (log.topics[1:], log.data)
        for log in receipt.logs
        if log.address.lower() == address.lower() and log.topics and log.topics[0] == topic
    ]


def word(value: int | str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value.rjust(32, b"\x00")
    if isinstance(value, str):
        return bytes.fromhex(value[2:]).rjust(32, b"\x00")
    return value.to_bytes(32, "big")
