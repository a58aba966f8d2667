"""Random durations for scenarios: constant, uniform, exponential, lognormal, truncated normal, empirical.

Rules:

* A distribution is a validated value (pydantic), written in TOML as a plain number of seconds
  (a constant) or a table with a ``kind``: ``{ kind = "exponential", mean = 0.05 }``.
* ``sample(rng)`` draws from the ``random.Random`` it is given and from nothing else, so a run is
  repeatable from its seed. Every sample is a finite number >= 0.
* ``mean`` is the distribution's exact mean (the truncated normal's mean after truncation), used by
  reports and by the queueing checks.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_SQRT_2PI = math.sqrt(2 * math.pi)


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constant(_Dist):
    kind: Literal["constant"] = "constant"
    value: float = Field(ge=0, allow_inf_nan=False)

    def sample(self, rng: random.Random) -> float:
        return self.value

    @property
    def mean(self) -> float:
        return self.value


class Uniform(_Dist):
    kind: Literal["uniform"]
    low: float = Field(ge=0, allow_inf_nan=False)
    high: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        return self

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2


class Exponential(_Dist):
    kind: Literal["exponential"]
    mean: float = Field(gt=0, allow_inf_nan=False)

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1 / self.mean)


class Lognormal(_Dist):
    """Given by the mean of the samples (not of their logarithm) and the sigma of the logarithm."""

    kind: Literal["lognormal"]
    mean: float = Field(gt=0, allow_inf_nan=False)
    sigma: float = Field(ge=0, le=5, allow_inf_nan=False)

    def sample(self, rng: random.Random) -> float:
        mu = math.log(self.mean) - self.sigma**2 / 2
        return rng.lognormvariate(mu, self.sigma)


class Normal(_Dist):
    """A normal distribution truncated at 0 (negative draws are drawn again)."""

    kind: Literal["normal"]
    mean_: float = Field(alias="mean", ge=0, allow_inf_nan=False)
    sd: float = Field(ge=0, allow_inf_nan=False)

    def sample(self, rng: random.Random) -> float:
        if self.sd == 0:
            return self.mean_
        for _ in range(1000):
            x = rng.gauss(self.mean_, self.sd)
            if x >= 0:
                return x
        return 0.0  # unreachable in practice: mean >= 0 keeps half the mass above 0

    @property
    def mean(self) -> float:
        if self.sd == 0:
            return self.mean_
        a = -self.mean_ / self.sd
        pdf = math.exp(-a * a / 2) / _SQRT_2PI
        tail = 0.5 * math.erfc(a / math.sqrt(2))
        return self.mean_ + self.sd * pdf / tail


class Empirical(_Dist):
    """Draws uniformly from a list of observed values."""

    kind: Literal["empirical"]
    values: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(min_length=1)

    def sample(self, rng: random.Random) -> float:
        return self.values[rng.randrange(len(self.values))]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)


def _number_is_constant(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"kind": "constant", "value": value}
    return value


Distribution = Annotated[
    Constant | Uniform | Exponential | Lognormal | Normal | Empirical,
    Field(discriminator="kind"),
    BeforeValidator(_number_is_constant),
]

ZERO = Constant(value=0)

__all__ = ["ZERO", "Constant", "Distribution", "Empirical", "Exponential", "Lognormal", "Normal", "Uniform"]
