"""The three x402 roles as plain objects: client, resource server, facilitator (no I/O)."""

from .client import Client, FetchResult, PaymentRecord, PaymentRefused, SpendPolicy
from .client_channels import ChannelEvent, ChannelStore, ClientChannels, DepositPolicy
from .driver import BaseDriver, Driver, UnsupportedEffect, arun, dispatch, drive, run
from .facilitator import Facilitator, PendingSettlement, SettlementRecord
from .messages import (
    AmbiguousPath,
    Effect,
    GiveFeedback,
    Handle,
    HttpRequest,
    HttpResponse,
    Send,
    Settle,
    Steps,
    Unreachable,
    Verify,
    canonical_path,
)
from .server import ResourceServer, Route
from .server_channels import ChannelBook, ChannelWork

__all__ = [
    "AmbiguousPath",
    "BaseDriver",
    "ChannelBook",
    "ChannelEvent",
    "ChannelStore",
    "ChannelWork",
    "Client",
    "ClientChannels",
    "DepositPolicy",
    "Driver",
    "Effect",
    "Facilitator",
    "FetchResult",
    "GiveFeedback",
    "Handle",
    "HttpRequest",
    "HttpResponse",
    "PaymentRecord",
    "PaymentRefused",
    "PendingSettlement",
    "ResourceServer",
    "Route",
    "Send",
    "Settle",
    "SettlementRecord",
    "SpendPolicy",
    "Steps",
    "Unreachable",
    "UnsupportedEffect",
    "Verify",
    "arun",
    "canonical_path",
    "dispatch",
    "drive",
    "run",
]
