"""Pytest fixtures for the contract tests (helpers live in `helpers.py`)."""

import pytest

from .helpers import INITIAL_BALANCE, Chain, Payer, new_chain, new_payer


@pytest.fixture
def chain() -> Chain:
    return new_chain()


@pytest.fixture
def payer(chain: Chain) -> Payer:
    """A payer holding INITIAL_BALANCE, minted by the deployer."""
    holder = new_payer()
    chain.transact(chain.token, "mint", holder.address, INITIAL_BALANCE)
    return holder
