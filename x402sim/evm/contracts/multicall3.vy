# pragma version 0.4.3
"""
@title Multicall3, Vyper edition
@notice Batches calls in one `eth_call`, ABI-compatible with the Solidity
        Multicall3 deployed at 0xcA11bde05977b3631167028862bE2a173976CA11:
        same function signatures, selectors, result encoding and revert
        strings, so the x402 SDKs' multicall-based diagnosis works unchanged.
@dev Vyper needs static bounds, and they are the only difference from the
     Solidity contract: at most 64 calls per batch, at most 4096 bytes of
     callData per call (larger batches or call data revert while decoding),
     and at most 4096 bytes of return data kept per call (longer return data
     is cut to its first 4096 bytes).
     The contract has no storage and no immutables, so its runtime code can be
     placed straight into a genesis state without running a constructor.
"""

MAX_CALLS: constant(uint256) = 64
MAX_DATA: constant(uint256) = 4096
# Solidity Multicall3 returns blockhash(block.number), which the EVM defines as
# zero; Vyper's blockhash() reverts outside the last 256 blocks instead.
_CURRENT_BLOCK_HASH: constant(bytes32) = empty(bytes32)


struct Call:
    target: address
    callData: Bytes[MAX_DATA]


struct Call3:
    target: address
    allowFailure: bool
    callData: Bytes[MAX_DATA]


struct Call3Value:
    target: address
    allowFailure: bool
    value: uint256
    callData: Bytes[MAX_DATA]


struct Result:
    success: bool
    returnData: Bytes[MAX_DATA]


@payable
@external
def aggregate(
    calls: DynArray[Call, MAX_CALLS],
) -> (uint256, DynArray[Bytes[MAX_DATA], MAX_CALLS]):
    return_data: DynArray[Bytes[MAX_DATA], MAX_CALLS] = []
    for c: Call in calls:
        success: bool = False
        response: Bytes[MAX_DATA] = b""
        success, response = raw_call(
            c.target, c.callData, max_outsize=MAX_DATA, revert_on_failure=False
        )
        assert success, "Multicall3: call failed"
        return_data.append(response)
    return block.number, return_data


@payable
@external
def tryAggregate(
    requireSuccess: bool, calls: DynArray[Call, MAX_CALLS]
) -> DynArray[Result, MAX_CALLS]:
    return self._try_aggregate(requireSuccess, calls)


@payable
@external
def tryBlockAndAggregate(
    requireSuccess: bool, calls: DynArray[Call, MAX_CALLS]
) -> (uint256, bytes32, DynArray[Result, MAX_CALLS]):
    return block.number, _CURRENT_BLOCK_HASH, self._try_aggregate(requireSuccess, calls)


@payable
@external
def blockAndAggregate(
    calls: DynArray[Call, MAX_CALLS],
) -> (uint256, bytes32, DynArray[Result, MAX_CALLS]):
    return block.number, _CURRENT_BLOCK_HASH, self._try_aggregate(True, calls)


@payable
@external
def aggregate3(calls: DynArray[Call3, MAX_CALLS]) -> DynArray[Result, MAX_CALLS]:
    results: DynArray[Result, MAX_CALLS] = []
    for c: Call3 in calls:
        success: bool = False
        response: Bytes[MAX_DATA] = b""
        success, response = raw_call(
            c.target, c.callData, max_outsize=MAX_DATA, revert_on_failure=False
        )
        assert success or c.allowFailure, "Multicall3: call failed"
        results.append(Result(success=success, returnData=response))
    return results


@payable
@external
def aggregate3Value(calls: DynArray[Call3Value, MAX_CALLS]) -> DynArray[Result, MAX_CALLS]:
    results: DynArray[Result, MAX_CALLS] = []
    total: uint256 = 0
    for c: Call3Value in calls:
        total += c.value
        success: bool = False
        response: Bytes[MAX_DATA] = b""
        success, response = raw_call(
            c.target, c.callData, max_outsize=MAX_DATA, value=c.value, revert_on_failure=False
        )
        assert success or c.allowFailure, "Multicall3: call failed"
        results.append(Result(success=success, returnData=response))
    assert msg.value == total, "Multicall3: value mismatch"
    return results


@view
@external
def getBlockHash(blockNumber: uint256) -> bytes32:
    # Zero outside the EVM's window, as Solidity's blockhash(), instead of reverting.
    if blockNumber >= block.number or block.number - blockNumber > 256:
        return empty(bytes32)
    return blockhash(blockNumber)


@view
@external
def getBlockNumber() -> uint256:
    return block.number


@view
@external
def getCurrentBlockCoinbase() -> address:
    return block.coinbase


@view
@external
def getCurrentBlockDifficulty() -> uint256:
    return convert(block.prevrandao, uint256)


@view
@external
def getCurrentBlockGasLimit() -> uint256:
    return block.gaslimit


@view
@external
def getCurrentBlockTimestamp() -> uint256:
    return block.timestamp


@view
@external
def getEthBalance(addr: address) -> uint256:
    return addr.balance


@view
@external
def getLastBlockHash() -> bytes32:
    return block.prevhash


@view
@external
def getBasefee() -> uint256:
    return block.basefee


@view
@external
def getChainId() -> uint256:
    return chain.id


@internal
def _try_aggregate(
    require_success: bool, calls: DynArray[Call, MAX_CALLS]
) -> DynArray[Result, MAX_CALLS]:
    results: DynArray[Result, MAX_CALLS] = []
    for c: Call in calls:
        success: bool = False
        response: Bytes[MAX_DATA] = b""
        success, response = raw_call(
            c.target, c.callData, max_outsize=MAX_DATA, revert_on_failure=False
        )
        assert success or not require_success, "Multicall3: call failed"
        results.append(Result(success=success, returnData=response))
    return results
