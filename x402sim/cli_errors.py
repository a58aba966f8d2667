"""How every ``x402sim`` command reports an error, and the one rule for its exit code.

Job: print ``error: MESSAGE`` on stderr and end the command with the right code, the same way in every
command group (simulator, HTTP services, governance, fuzzing, conformance).

Exit codes of every command:

* 0: success.
* 1: the command ran and its verdict is a failure: a broken invariant, a failed MUST case, an HTTP
  error answer, a refused payment, an audit log that does not verify, a regression in ``diff``.
* 2: bad usage or input, or the command could not run: every ``X402simError`` (a bad file, option or
  environment variable; a malformed message; a failed chain backend; a service or target that could
  not be started or reached; an output that exists or cannot be written), except ``Refused``.
* 3: a payment denied by the spend policy (``pay --policy``), i.e. ``Refused``.

Rules:

* A command that needs an optional extra runs that part inside ``needs_extra``: a module of an extra
  it cannot import ends it with one line naming the extra to install (``x402sim.extras``), exit 2.
* Commands raise what ``fail`` returns (``raise fail("...") from None``) or, for an ``X402simError``
  they caught, what ``fail_with`` returns, which picks the code with ``exit_for``.
* The message is printed as written, on one line: never read as rich markup (it often holds paths,
  hashes and brackets) and never broken at the console's width (a path stays whole, for a reader
  and for a script that looks for it).
* This module is for the command line only: it imports typer and rich, and no library module imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from .errors import Refused
from .extras import EXTRAS, extra_for

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "err",
    "exit_for",
    "fail",
    "fail_with",
    "needs_extra",
    "say",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3

err = Console(stderr=True)  # stderr of the running command (rich looks it up at each print)


def exit_for(error: BaseException) -> int:
    """The exit code of a command that stops on ``error``: 3 for a refusal by a rule (``Refused``), else
    2 (any other ``X402simError``, or an error of a library the command could not use its input with)."""
    return EXIT_REFUSED if isinstance(error, Refused) else EXIT_BAD_INPUT


def say(message: str) -> None:
    """One line on stderr, as written (no markup, no wrapping)."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``error: message`` on stderr; return the ``typer.Exit`` to raise with ``code``."""
    err.print("[red]error:[/red] ", end="", highlight=False)
    say(message)
    return typer.Exit(code)


def fail_with(error: BaseException) -> typer.Exit:
    """``fail`` with the error's text and the code ``exit_for`` gives it."""
    return fail(str(error), exit_for(error))


@contextmanager
def needs_extra(who: str, extra: str) -> Iterator[None]:
    """Run a block of the command ``who`` that needs the extra ``extra``: when it cannot import a
    module of an extra (absent from this install), the command ends with one line, ``who needs ...:
    pip install 'x402sim[extra]'``, and exit code 2."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if extra_for(exc) is None:
            raise
        raise fail(EXTRAS[extra].advice(who)) from None
