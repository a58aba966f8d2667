"""The chain's JSON-RPC facade, served on loopback and driven by web3.py and plain httpx POSTs."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from web3 import Web3
from web3.exceptions import BlockNotFound, ContractLogicError, TransactionNotFound
from web3.logs import DISCARD

from x402sim.evm import LocalChain, address_of_key, load_artifact
from x402sim.evm.chain import ETHER
from x402sim.evm.eip712 import Authorization, authorization_digest, sign_digest, split_signature
from x402sim.evm.token import TRANSFER_TOPIC
from x402sim.http.chain_rpc import MAX_BODY, chain_rpc_app
from x402sim.http.runner import Services

USDC_ABI = load_artifact("usdc").abi


@pytest.fixture
def serve():
    """``serve(**app_options) -> (url, chain)``: a fresh chain served until the test ends."""
    with contextlib.ExitStack() as stack:

        def start(**options):
            chain = LocalChain(seed=21)
            services = Services()
            url = services.add("chain", chain_rpc_app(chain, **options))
            stack.enter_context(services)
            return url, chain

        yield start


def rpc(url: str, method: str, *params, rid: int = 1) -> dict:
    """One JSON-RPC call by plain HTTP; returns the whole answer object."""
    resp = httpx.post(url, json={"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params)})
    assert resp.status_code == 200
    return resp.json()


def result(url: str, method: str, *params):
    answer = rpc(url, method, *params)
    assert "error" not in answer, answer
    return answer["result"]


def web3(url: str) -> Web3:
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}))


def payment_args(chain, payer_key, to, value, nonce, *, signer=None, valid_for=3600):
    """transferWithAuthorization arguments, signed by ``signer`` (default the payer)."""
    auth = Authorization(address_of_key(payer_key), to, value, chain.now - 600, chain.now + valid_for, nonce)
    digest = authorization_digest(chain.domain, auth)
    v, r, s = split_signature(sign_digest(signer or payer_key, digest))
    return [auth.from_, auth.to, auth.value, auth.valid_after, auth.valid_before, auth.nonce, v, r, s]


# -- web3.py --------------------------------------------------------------------------------------


def test_web3_reads_chain_id_block_number_and_blocks(serve):
    url, chain = serve()
    w3 = web3(url)
    assert w3.eth.chain_id == chain.chain_id == 31337
    assert w3.is_connected()
    assert w3.eth.block_number == chain.block_number == 1  # the token's deployment
    latest = w3.eth.get_block("latest")
    head = chain.evm.get_canonical_head()
    assert latest["number"] == head.block_number and latest["hash"] == head.hash
    assert latest["timestamp"] == chain.latest_timestamp
    assert latest["gasLimit"] == chain.block_gas_limit and latest["gasUsed"] > 0
    assert latest["baseFeePerGas"] == head.base_fee_per_gas
    assert latest["parentHash"] == w3.eth.get_block(0)["hash"]
    full = w3.eth.get_block(1, full_transactions=True)
    (deploy,) = full["transactions"]
    assert deploy["to"] is None and deploy["from"] == chain.minter and deploy["blockNumber"] == 1
    assert w3.eth.get_block(latest["hash"])["number"] == 1
    assert w3.eth.get_block("earliest")["number"] == 0
    assert w3.eth.get_block("finalized")["number"] == 1
    receipt = w3.eth.get_transaction_receipt(deploy["hash"])
    assert receipt["contractAddress"] == chain.usdc and receipt["status"] == 1
    with pytest.raises(BlockNotFound):
        w3.eth.get_block(99)


def test_web3_reads_the_token_through_contract_calls(serve):
    url, chain = serve()
    w3 = web3(url)
    holder = address_of_key(chain.new_key())
    assert w3.provider.make_request("x402sim_fund", [holder, hex(5_000_000), 10**15])["result"] is True
    usdc = w3.eth.contract(address=chain.usdc, abi=USDC_ABI)
    assert usdc.functions.name().call() == "USD Coin"
    assert usdc.functions.version().call() == "2"
    assert usdc.functions.decimals().call() == 6
    assert usdc.functions.balanceOf(holder).call() == 5_000_000 == chain.balance_of(holder)
    assert usdc.functions.balanceOf(holder).call(block_identifier=1) == 0  # before the funding block
    assert w3.eth.get_balance(holder, block_identifier=1) == 0
    assert usdc.functions.authorizationState(holder, b"\x07" * 32).call() is False
    assert w3.eth.get_balance(holder) == 10**15
    code = w3.eth.get_code(chain.usdc)
    assert code == chain.code(chain.usdc) and code.startswith(load_artifact("usdc").runtime_bytecode)
    assert w3.eth.get_code(holder) == b""


def test_signed_payment_is_mined_with_status_gas_and_logs(serve):
    url, chain = serve()
    w3 = web3(url)
    usdc = w3.eth.contract(address=chain.usdc, abi=USDC_ABI)
    payer_key, relayer_key = chain.new_key(), chain.new_key()
    payer, relayer = address_of_key(payer_key), address_of_key(relayer_key)
    payee = address_of_key(chain.new_key())
    chain.fund_many([(payer, 1_000_000, 0), (relayer, 0, ETHER)])
    nonce = b"\x42" * 32

    args = payment_args(chain, payer_key, payee, 10_000, nonce)
    tx = usdc.functions.transferWithAuthorization(*args).build_transaction(
        {"from": relayer, "nonce": w3.eth.get_transaction_count(relayer, "pending")}
    )  # asks the node for gas (eth_estimateGas), chain id, priority fee and base fee
    assert tx["chainId"] == chain.chain_id and tx["maxPriorityFeePerGas"] == 0
    signed = w3.eth.account.sign_transaction(tx, relayer_key)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10, poll_latency=0.05)

    ours = chain.receipt(bytes(tx_hash))
    assert receipt["status"] == 1 and ours.success
    assert receipt["gasUsed"] == ours.gas_used < tx["gas"]  # the estimate was enough
    assert receipt["cumulativeGasUsed"] == ours.gas_used and receipt["transactionIndex"] == 0
    assert receipt["effectiveGasPrice"] == ours.effective_gas_price
    assert receipt["blockNumber"] == ours.block_number == chain.block_number
    assert receipt["from"] == relayer and receipt["to"] == chain.usdc and receipt["type"] == 2
    # FiatToken order: AuthorizationUsed, then Transfer
    (used,) = usdc.events.AuthorizationUsed().process_receipt(receipt, errors=DISCARD)
    assert used.args.authorizer == payer and used.args.nonce == nonce and used.logIndex == 0
    (transfer,) = usdc.events.Transfer().process_receipt(receipt, errors=DISCARD)
    assert (transfer.args["from"], transfer.args.to, transfer.args.value) == (payer, payee, 10_000)
    assert transfer.logIndex == 1 and transfer.blockHash == receipt["blockHash"]
    assert usdc.functions.authorizationState(payer, nonce).call() is True
    assert usdc.functions.balanceOf(payee).call() == 10_000

    mined = w3.eth.get_transaction(tx_hash)
    assert mined["blockNumber"] == receipt["blockNumber"] and mined["from"] == relayer
    assert bytes(mined["input"]) == bytes.fromhex(tx["data"][2:])

    # eth_getLogs: a Transfer topic filter finds it; a filter on another payee finds nothing
    topic_to = "0x" + "00" * 12 + payee[2:].lower()
    transfer_filter = {"fromBlock": 0, "toBlock": "latest", "address": chain.usdc}
    logs = w3.eth.get_logs({**transfer_filter, "topics": [TRANSFER_TOPIC, None, topic_to]})
    assert [(entry["transactionHash"], entry["logIndex"]) for entry in logs] == [(tx_hash, 1)]
    other = "0x" + "00" * 12 + relayer[2:].lower()
    assert w3.eth.get_logs({"fromBlock": 0, "topics": [[TRANSFER_TOPIC], None, [other]]}) == []
    transfers = usdc.events.Transfer().get_logs(from_block=0, argument_filters={"to": payee})
    assert [t.args.value for t in transfers] == [10_000]
    all_transfers = w3.eth.get_logs({"fromBlock": 0, "topics": [TRANSFER_TOPIC]})
    assert len(all_transfers) == 2  # the funding mint and the payment
    in_block = w3.eth.get_logs({"blockHash": receipt["blockHash"]})
    assert [(entry["logIndex"], entry["address"]) for entry in in_block] == [(0, chain.usdc), (1, chain.usdc)]


def test_a_reverting_call_raises_contract_logic_error_with_the_token_text(serve):
    url, chain = serve()
    w3 = web3(url)
    usdc = w3.eth.contract(address=chain.usdc, abi=USDC_ABI)
    payer_key, relayer_key = chain.new_key(), chain.new_key()
    payer, relayer = address_of_key(payer_key), address_of_key(relayer_key)
    chain.fund_many([(payer, 1_000, 0), (relayer, 0, ETHER)])
    forged = payment_args(chain, payer_key, relayer, 1, b"\x01" * 32, signer=chain.new_key())
    with pytest.raises(ContractLogicError, match="FiatTokenV2: invalid signature"):
        usdc.functions.transferWithAuthorization(*forged).call()
    with pytest.raises(ContractLogicError, match="invalid signature"):
        usdc.functions.transferWithAuthorization(*forged).estimate_gas({"from": relayer})

    # the raw answer is geth's: code 3, the reason in the message, the revert data in `data`
    data = usdc.functions.transferWithAuthorization(*forged)._encode_transaction_data()
    error = rpc(url, "eth_call", {"to": chain.usdc, "data": data}, "latest")["error"]
    assert error["code"] == 3 and error["message"] == "execution reverted: FiatTokenV2: invalid signature"
    assert error["data"].startswith("0x08c379a0")

    # sent anyway (gas given, so no estimate), it is mined and fails, and the receipt says so
    tx = usdc.functions.transferWithAuthorization(*forged).build_transaction(
        {"from": relayer, "gas": 150_000, "nonce": 0}
    )
    tx_hash = w3.eth.send_raw_transaction(w3.eth.account.sign_transaction(tx, relayer_key).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10, poll_latency=0.05)
    assert receipt["status"] == 0 and receipt["logs"] == []
    assert receipt["gasUsed"] == chain.receipt(bytes(tx_hash)).gas_used
    assert chain.receipt(bytes(tx_hash)).revert_reason == "FiatTokenV2: invalid signature"

    # replayed on the state before its block (as a facilitator asks a node why it failed)
    mined = w3.eth.get_transaction(tx_hash)
    replay = {"from": relayer, "to": chain.usdc, "data": mined["input"].to_0x_hex(), "gas": hex(mined["gas"])}
    error = rpc(url, "eth_call", replay, hex(receipt["blockNumber"] - 1))["error"]
    assert error["code"] == 3 and error["message"].endswith("invalid signature")


def test_a_call_on_an_older_block_sees_that_block_state_and_time(serve):
    url, chain = serve()
    w3 = web3(url)
    usdc = w3.eth.contract(address=chain.usdc, abi=USDC_ABI)
    payer_key = chain.new_key()
    payee = address_of_key(chain.new_key())
    chain.fund(address_of_key(payer_key), usdc=500)
    payment = usdc.functions.transferWithAuthorization(
        *payment_args(chain, payer_key, payee, 500, b"\x09" * 32, valid_for=100)
    )
    funded = w3.eth.block_number
    result(url, "evm_mine")  # stamped about now: the authorization is valid in this block
    result(url, "evm_increaseTime", 1_000)
    result(url, "evm_mine")
    assert payment.call(block_identifier=funded) == []  # state of `funded`, time of the block after it
    with pytest.raises(ContractLogicError, match="authorization is expired"):
        payment.call()  # the same state, but at the head it is too late
    with pytest.raises(ContractLogicError, match="transfer amount exceeds balance"):
        payment.call(block_identifier=funded - 1)  # before the payer was funded
    assert usdc.functions.balanceOf(payee).call() == 0  # calls change nothing


def test_pending_transactions_wait_for_evm_mine_when_automine_is_off(serve):
    url, chain = serve(automine=False)
    w3 = web3(url)
    sender_key = chain.new_key()
    sender = address_of_key(sender_key)
    chain.fund(sender, eth=ETHER)
    payee = address_of_key(chain.new_key())
    before = w3.eth.block_number
    hashes = []
    for nonce in range(3):
        tx = {
            "type": 2,
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(sender, "pending"),
            "to": payee,
            "value": 1_000 + nonce,
            "gas": w3.eth.estimate_gas({"from": sender, "to": payee, "value": 1_000}),
            "maxFeePerGas": 2 * w3.eth.gas_price,
            "maxPriorityFeePerGas": w3.eth.max_priority_fee,
        }
        assert tx["nonce"] == nonce and tx["gas"] == 21_000
        signed = w3.eth.account.sign_transaction(tx, sender_key)
        hashes.append(w3.eth.send_raw_transaction(signed.raw_transaction))
    assert w3.eth.get_transaction_count(sender, "pending") == 3
    assert w3.eth.get_transaction_count(sender) == 0 and w3.eth.block_number == before
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction_receipt(hashes[0])
    waiting = w3.eth.get_transaction(hashes[1])
    assert waiting["blockNumber"] is None and waiting["nonce"] == 1 and waiting["value"] == 1_001

    assert result(url, "evm_mine") == "0x0"
    receipts = [w3.eth.get_transaction_receipt(h) for h in hashes]
    assert {r["blockNumber"] for r in receipts} == {before + 1}
    assert [r["transactionIndex"] for r in receipts] == [0, 1, 2]
    assert [r["cumulativeGasUsed"] for r in receipts] == [21_000, 42_000, 63_000]
    assert w3.eth.get_transaction_count(sender) == 3 and w3.eth.get_balance(payee) == 3_003
    assert w3.eth.get_balance(payee, block_identifier=before) == 0


def test_fees_follow_the_base_fee_and_fee_history_has_its_shape(serve):
    url, chain = serve()
    w3 = web3(url)
    assert w3.eth.gas_price == chain.base_fee and w3.eth.max_priority_fee == 0
    chain.fund(address_of_key(chain.new_key()), usdc=1)
    history = w3.eth.fee_history(2, "latest", [25, 75])
    assert history["oldestBlock"] == chain.block_number - 1
    assert len(history["baseFeePerGas"]) == 3 and history["baseFeePerGas"][-1] == chain.base_fee
    assert len(history["gasUsedRatio"]) == 2 and 0 < history["gasUsedRatio"][-1] < 1
    assert history["reward"] == [[0, 0], [0, 0]]


# -- plain HTTP: the JSON-RPC envelope -------------------------------------------------------------


def test_batches_answer_each_call_in_order_and_skip_notifications(serve):
    url, chain = serve()
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},  # a notification
        {"jsonrpc": "2.0", "id": 7, "method": "eth_nope", "params": []},
        {"jsonrpc": "2.0", "id": 8, "method": "net_version"},
        42,
    ]
    resp = httpx.post(url, json=batch)
    assert resp.status_code == 200
    a, nope, version, bad = resp.json()
    assert a == {"jsonrpc": "2.0", "id": "a", "result": "0x7a69"}
    assert nope["id"] == 7 and nope["error"]["code"] == -32601 and "eth_nope" in nope["error"]["message"]
    assert version["result"] == "31337"
    assert bad["id"] is None and bad["error"]["code"] == -32600
    assert httpx.post(url, json=[]).json()["error"]["code"] == -32600
    only_notification = httpx.post(url, json={"jsonrpc": "2.0", "method": "eth_chainId"})
    assert only_notification.status_code == 204 and only_notification.content == b""
    notifications = [{"jsonrpc": "2.0", "method": "eth_nope"}, {"jsonrpc": "2.0", "method": "evm_mine"}]
    resp = httpx.post(url, json=notifications)
    assert resp.status_code == 204 and resp.content == b""
    assert chain.block_number == 2  # the notification was still carried out


def test_invalid_requests_and_params_get_json_rpc_errors(serve):
    url, _ = serve()
    unknown = rpc(url, "eth_signTransaction", {})
    assert unknown["error"]["code"] == -32601 and "eth_signTransaction" in unknown["error"]["message"]

    bad_address = rpc(url, "eth_getBalance", "0x1234", "latest")["error"]
    assert bad_address["code"] == -32602
    assert "address" in bad_address["message"] and "20-byte" in bad_address["message"]
    bad_checksum = rpc(url, "eth_getBalance", "0xAbCdEf0000000000000000000000000000000000")["error"]
    assert bad_checksum["code"] == -32602 and "checksum" in bad_checksum["message"]
    missing = rpc(url, "eth_getTransactionReceipt")["error"]
    assert missing["code"] == -32602 and "transactionHash" in missing["message"]
    bad_tag = rpc(url, "eth_getBlockByNumber", "newest", False)["error"]
    assert bad_tag["code"] == -32602 and "block" in bad_tag["message"]
    too_many = rpc(url, "eth_chainId", 1)["error"]
    assert too_many["code"] == -32602 and "at most 0" in too_many["message"]
    bad_field = rpc(url, "eth_call", {"to": "0x" + "11" * 20, "data": "0xzz"})["error"]
    assert bad_field["code"] == -32602 and "data" in bad_field["message"]
    by_name = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": {}})
    assert by_name.json()["error"]["code"] == -32602

    for body in (b"{not json", b'{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": [NaN]}'):
        resp = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 200
        assert resp.json() == {"jsonrpc": "2.0", "id": None, "error": resp.json()["error"]}
        assert resp.json()["error"]["code"] == -32700
    old = httpx.post(url, json={"jsonrpc": "1.0", "id": 3, "method": "eth_chainId", "params": []}).json()
    assert old["id"] == 3 and old["error"]["code"] == -32600

    rejected = rpc(url, "eth_sendRawTransaction", "0x02c0")["error"]
    assert rejected["code"] == -32000 and "invalid transaction" in rejected["message"]


def test_an_oversized_body_gets_413_with_a_json_rpc_error(serve):
    url, _ = serve()
    padding = "0x" + "00" * (MAX_BODY // 2)
    resp = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [padding]})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == -32600 and str(MAX_BODY) in resp.json()["error"]["message"]
    assert rpc(url, "eth_chainId")["result"] == "0x7a69"  # the service is fine afterwards


# -- time, blocks and the test methods -------------------------------------------------------------


def test_increase_time_and_set_next_timestamp_move_block_timestamps(serve):
    url, chain = serve()
    start = int(result(url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
    assert result(url, "evm_increaseTime", 3600) == 3600
    assert result(url, "evm_increaseTime", "0xe10") == 7200
    result(url, "evm_mine")
    mined = int(result(url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
    assert mined >= start + 7200 and mined == chain.latest_timestamp

    assert result(url, "evm_setNextBlockTimestamp", hex(mined + 500)) is None
    result(url, "evm_mine")
    assert int(result(url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16) == mined + 500
    result(url, "evm_mine", mined + 900)
    assert chain.latest_timestamp == mined + 900

    backwards = rpc(url, "evm_setNextBlockTimestamp", mined)["error"]
    assert backwards["code"] == -32602 and "timestamp" in backwards["message"]
    assert rpc(url, "evm_increaseTime", -5)["error"]["code"] == -32602


def test_fund_mints_and_sends_ether(serve):
    url, chain = serve()
    who = address_of_key(chain.new_key())
    assert result(url, "x402sim_fund", who.lower(), "0x2710", ETHER) is True
    assert chain.balance_of(who) == 10_000
    assert int(result(url, "eth_getBalance", who, "latest"), 16) == ETHER
    assert result(url, "x402sim_fund", who) is True  # both amounts optional: nothing to do
    assert result(url, "x402sim_accounts") == []
    info = result(url, "x402sim_info")
    assert info["chainId"] == 31337 and info["token"] == chain.usdc
    assert (info["tokenName"], info["tokenVersion"], info["tokenDecimals"]) == ("USD Coin", "2", 6)
    assert info["multicall"] == to_checksum_address("0xca11bde05977b3631167028862be2a173976ca11")


def test_published_accounts_are_answered_as_given(serve):
    key = bytes(range(32))
    account = {"address": address_of_key(key), "private_key": "0x" + key.hex(), "usdc": 7}
    url, _ = serve(accounts=[account])
    assert result(url, "x402sim_accounts") == [account]
    assert result(url, "eth_accounts") == []  # this node signs nothing


def test_a_clock_moves_the_chain_forward_with_each_request(serve):
    wall = {"now": 0.0}
    url, chain = serve(clock=lambda: wall["now"])
    wall["now"] = chain.now + 86_400.7
    result(url, "evm_mine")
    stamp = int(result(url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
    assert stamp >= int(wall["now"])
    wall["now"] = 10.0  # a wall clock that jumps back never takes the chain with it
    result(url, "evm_mine")
    assert chain.latest_timestamp == stamp
    wall["now"] = stamp + 100.0
    assert result(url, "evm_increaseTime", 1_000) == 1_000
    result(url, "evm_mine")
    assert chain.latest_timestamp >= stamp + 100 + 1_000


def test_block_time_mines_pending_transactions_without_evm_mine(serve):
    url, chain = serve(block_time=0.05)
    w3 = web3(url)
    assert result(url, "x402sim_info")["automine"] is False
    key = chain.new_key()
    sender = address_of_key(key)
    assert result(url, "x402sim_fund", sender, 0, ETHER) is True
    tx = {
        "type": 2,
        "chainId": 31337,
        "nonce": 0,
        "to": address_of_key(chain.new_key()),
        "value": 5,
        "gas": 21_000,
        "maxFeePerGas": 2 * w3.eth.gas_price,
        "maxPriorityFeePerGas": 0,
    }
    tx_hash = w3.eth.send_raw_transaction(w3.eth.account.sign_transaction(tx, key).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10, poll_latency=0.02)
    assert receipt["status"] == 1 and receipt["gasUsed"] == 21_000


def test_the_block_producer_follows_the_asgi_lifespan_when_there_is_one():
    app = chain_rpc_app(LocalChain(seed=2), block_time=60)
    rpc_state = app.state.rpc
    with TestClient(app) as client:
        producer = rpc_state._producer
        assert producer is not None and not producer.done()
        assert client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).status_code == 200
        assert rpc_state._producer is producer  # the first request does not start a second one
    assert producer.cancelled() and rpc_state._producer is None


# -- whatever comes in, the answer is a JSON-RPC answer --------------------------------------------

_CHAIN = LocalChain(seed=4)
_ADDRESSES = st.sampled_from([_CHAIN.usdc, _CHAIN.bank, _CHAIN.bank.lower(), "0x" + "00" * 20, "0x12"])
_HEX = st.binary(max_size=68).map(lambda b: "0x" + b.hex()) | st.integers(0, 2**80).map(hex)
_BLOCKS = st.sampled_from(["latest", "pending", "earliest", "safe", "0x0", "0x1", "0x99", "soon"])
_LEAVES = st.none() | st.booleans() | st.integers(-1, 2**257) | _HEX | _ADDRESSES | _BLOCKS
_FIELDS = st.sampled_from(["from", "to", "data", "input", "gas", "value", "fromBlock", "toBlock", "topics"])
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_FIELDS, inner, max_size=4),
    max_leaves=8,
)
_METHODS = st.sampled_from(
    [
        "eth_call",
        "eth_estimateGas",
        "eth_getLogs",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBalance",
        "eth_getTransactionCount",
        "eth_feeHistory",
        "eth_getTransactionReceipt",
        "eth_sendRawTransaction",
        "evm_mine",
        "evm_increaseTime",
        "x402sim_fund",
    ]
)


@pytest.fixture(scope="module")
def fuzz_url():
    services = Services()
    url = services.add("chain", chain_rpc_app(_CHAIN, automine=False))
    with services:
        yield url


@settings(max_examples=150, deadline=None)
@given(method=_METHODS, params=st.lists(_VALUES, max_size=4))
def test_any_params_get_an_answer_never_an_internal_error(fuzz_url, method, params):
    resp = httpx.post(fuzz_url, json={"jsonrpc": "2.0", "id": 5, "method": method, "params": params})
    assert resp.status_code == 200
    answer = resp.json()
    assert answer["id"] == 5 and ("result" in answer) != ("error" in answer)
    if "error" in answer:
        assert answer["error"]["code"] in (3, -32000, -32602), answer
