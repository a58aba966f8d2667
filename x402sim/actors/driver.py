"""The one interface between the roles and a world: a ``Driver`` answers the roles' effects.

A role's operation is a generator of effects (``messages``). A world (the in-process testbed, the
HTTP services and clients, the SimPy simulator, the conformance harness, a future MCP transport)
supplies a ``Driver``: an object with one method per effect, which answers it in that world's way.
``run``, ``arun`` and ``drive`` step a role through a driver; ``dispatch`` is the only place that
looks at an effect's type.

Rules:

* One method per effect, named after it: ``send``, ``verify``, ``settle``, ``handle``, ``approve``,
  ``give_feedback``. A new effect adds one method here, one row to ``METHODS``, and a default in
  ``BaseDriver``; nothing else changes in a world that does not answer it.
* A world that does not answer an effect fails the same way in every world: ``BaseDriver``'s
  default raises ``UnsupportedEffect`` naming the effect and the world (``Driver.world``).
* The three runners differ only in how a method's answer is obtained: returned (``run``), awaited
  (``arun``), or delegated to with ``yield from`` inside a generator-based world such as a SimPy
  process (``drive``). A driver raising ``Unreachable`` makes the runner throw it into the role at
  the effect that could not be answered; roles turn it into a value.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import X402simError
from .messages import Approve, Effect, GiveFeedback, Handle, Send, Settle, Steps, Unreachable, Verify

R = TypeVar("R")

# The effect types and the driver method that answers each.
METHODS: dict[type, str] = {
    Send: "send",
    Verify: "verify",
    Settle: "settle",
    Handle: "handle",
    Approve: "approve",
    GiveFeedback: "give_feedback",
}


class UnsupportedEffect(X402simError, TypeError):
    """A world was asked to answer an effect it does not support."""

    def __init__(self, effect: object, world: str) -> None:
        self.effect = effect
        self.world = world
        super().__init__(f"the {world} does not answer {type(effect).__name__} effects")


class Driver(Protocol):
    """What a world supplies to run the roles. Each method answers one effect; for ``run`` it returns
    the answer, for ``arun`` it is a coroutine, for ``drive`` a generator returning the answer."""

    world: str

    def send(self, effect: Send) -> Any: ...
    def verify(self, effect: Verify) -> Any: ...
    def settle(self, effect: Settle) -> Any: ...
    def handle(self, effect: Handle) -> Any: ...
    def approve(self, effect: Approve) -> Any: ...
    def give_feedback(self, effect: GiveFeedback) -> Any: ...


class BaseDriver:
    """A driver that answers nothing: subclass it and define the methods a world supports; every
    other effect raises ``UnsupportedEffect`` naming it and ``world``."""

    world = "world"

    def _unsupported(self, effect: object) -> Any:
        raise UnsupportedEffect(effect, self.world)

    if TYPE_CHECKING:  # the defaults below, typed per effect so that subclasses may name theirs

        def send(self, effect: Send) -> Any: ...
        def verify(self, effect: Verify) -> Any: ...
        def settle(self, effect: Settle) -> Any: ...
        def handle(self, effect: Handle) -> Any: ...
        def approve(self, effect: Approve) -> Any: ...
        def give_feedback(self, effect: GiveFeedback) -> Any: ...

    else:
        send = verify = settle = handle = approve = give_feedback = _unsupported


def dispatch(driver: Driver, effect: Effect) -> Any:
    """``driver``'s answer to ``effect`` (for ``arun`` an awaitable, for ``drive`` a generator)."""
    try:
        name = METHODS[type(effect)]
    except KeyError:
        raise UnsupportedEffect(effect, driver.world) from None
    return getattr(driver, name)(effect)


def run(steps: Steps[R], driver: Driver) -> R:
    """Drive ``steps`` to completion, answering each effect with ``driver``'s method for it.

    If the driver raises ``Unreachable``, it is thrown into the role at the point of the effect."""
    answer: Any = None
    error: Unreachable | None = None
    while True:
        try:
            effect = steps.throw(error) if error is not None else steps.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            answer = dispatch(driver, effect)
        except Unreachable as exc:
            error = exc


async def arun(steps: Steps[R], driver: Driver) -> R:
    """``run`` for a driver whose methods are coroutines."""
    answer: Any = None
    error: Unreachable | None = None
    while True:
        try:
            effect = steps.throw(error) if error is not None else steps.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            answer = await dispatch(driver, effect)
        except Unreachable as exc:
            error = exc


def drive(steps: Steps[R], driver: Driver) -> Generator[Any, Any, R]:
    """``run`` inside a generator-based world (a SimPy process): each driver method is a generator,
    delegated to with ``yield from``, whose return value answers the effect."""
    answer: Any = None
    error: Unreachable | None = None
    while True:
        try:
            effect = steps.throw(error) if error is not None else steps.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            answer = yield from dispatch(driver, effect)
        except Unreachable as exc:
            error = exc


__all__ = ["METHODS", "BaseDriver", "Driver", "UnsupportedEffect", "arun", "dispatch", "drive", "run"]
