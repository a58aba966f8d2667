"""A second, independent implementation of each x402 role, for judging the conformance suite.

Job: catch the suite's false positives. The reference roles share the suite's assumptions, so a
case resting on one of them passes against the reference and still fails a correct implementation
that reads the specification differently. These roles were written from the x402 v2
specification (core spec, v2 HTTP transport, exact EVM scheme) and the 2026 rules, without
x402sim: nothing in this package imports it (``test_independent`` checks that).

* ``server.server_app(env)``: a resource server (plain ASGI) selling ``PROTECTED_PATH``,
  ``SECOND_PROTECTED_PATH`` and ``FAILING_PATH``.
* ``facilitator.facilitator_app(env)``: a facilitator (Starlette) for ``exact``/EIP-3009 on
  ``EVM_NETWORK``, talking to the chain at ``EVM_RPC_URL`` over JSON-RPC only.
* ``client.pay(env)``: one paid GET, returning the e2e verdict; ``python -m
  tests.conformance.independent.client`` prints it as a command would.
* ``wire``: what they share (header encoding, strict field readers, the EIP-3009 typed data).

Each reads the official e2e environment, so the suite runs them like any target: in process
(``InProcessService`` on loopback, ``InProcessClient``), see ``tests/conformance/test_independent.py``.
Each module's docstring lists its decisions and the specification text behind them.
"""
