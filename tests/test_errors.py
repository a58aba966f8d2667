"""Every exception x402sim raises on purpose is an ``X402simError`` of one kind, keeping its other bases."""

import importlib
from pathlib import Path

import pytest

from x402sim import errors, money
from x402sim.errors import InputError, OutputError, Refused, UnavailableError, WireError, X402simError

TREE = [
    ("x402sim.tables", "TableError", InputError, ()),
    ("x402sim.governance.policy", "PolicyError", InputError, ()),
    ("x402sim.governance.audit", "AuditError", InputError, ()),
    ("x402sim.sim.scenario", "ScenarioError", InputError, ()),
    ("x402sim.sim.sweep", "SweepError", InputError, ()),
    ("x402sim.http.routes_file", "RoutesFileError", InputError, (ValueError,)),
    ("x402sim.http.serve", "EnvError", InputError, (ValueError,)),
    ("x402sim.conformance.config", "ConfigError", InputError, ()),
    ("x402sim.conformance.reports", "ReportError", InputError, ()),
    ("x402sim.protocol.errors", "ProtocolError", WireError, (ValueError,)),
    ("x402sim.evm.eip712", "SignatureError", WireError, (ValueError,)),
    ("x402sim.http.bodies", "BodyError", WireError, ()),
    ("x402sim.http.chain_rpc.errors", "RpcError", WireError, ()),
    ("x402sim.evm.reads", "ChainError", X402simError, ()),
    ("x402sim.http.runner", "ServiceError", UnavailableError, ()),
    ("x402sim.conformance.targets", "TargetError", UnavailableError, ()),
    ("x402sim.fuzz.campaign", "CampaignError", UnavailableError, ()),
    ("x402sim.sim.run", "OutputExists", OutputError, ()),
    ("x402sim.actors.client", "PaymentRefused", Refused, ()),
    ("x402sim.trust.mandates", "MandateRefused", Refused, ()),
    ("x402sim.trust.signatures", "SignatureRefused", Refused, ()),
]
CONTROL_FLOW = [
    ("x402sim.actors.messages", "Unreachable"),
    ("x402sim.conformance.catalog", "CaseFailed"),
    ("x402sim.conformance.catalog", "CaseSkipped"),
]


@pytest.mark.parametrize(("module", "name", "kind", "also"), TREE, ids=[row[1] for row in TREE])
def test_each_error_has_its_kind_and_keeps_its_bases(module, name, kind, also):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, kind) and issubclass(cls, X402simError)
    assert all(issubclass(cls, base) for base in also)


@pytest.mark.parametrize(("module", "name"), CONTROL_FLOW, ids=[row[1] for row in CONTROL_FLOW])
def test_control_flow_is_not_an_error(module, name):
    assert not issubclass(getattr(importlib.import_module(module), name), X402simError)


@pytest.mark.parametrize("module", [errors, money], ids=["errors", "money"])
def test_leaf_modules_import_nothing_of_x402sim(module):
    source = Path(module.__file__).read_text()
    assert "import x402sim" not in source and "from ." not in source and "from x402sim" not in source


def test_exit_codes():
    from x402sim.cli_errors import exit_for
    from x402sim.http.routes_file import RoutesFileError
    from x402sim.trust.mandates import MandateRefused

    assert exit_for(RoutesFileError("routes.toml: bad")) == 2
    assert exit_for(MandateRefused("expired", "the mandate expired")) == 3
    assert exit_for(OSError("disk full")) == 2
