"""Packet loss processes: i.i.d. (Bernoulli) and bursty (Gilbert–Elliott), per transmitted packet.

Why two: SCNSL (Split-Et-Impera's simulator) drops packets independently at a fixed rate, but
wireless links lose packets in bursts (fading, interference, a busy channel), and a burst that
takes out several packets of one frame costs a TCP sender far more than the same number of
losses spread over many frames. Both models are parametrised by the same *average* loss rate, so
a loss level in the config means the same long-run fraction of lost packets under either.

Gilbert–Elliott (Gilbert 1960, Elliott 1963) is a two-state Markov chain advanced once per
packet: in the good state a packet is lost with probability ``good_loss`` (0 by default), in the
bad state with ``bad_loss`` (1 by default: the "simple Gilbert" channel), and the chain leaves the
bad state with probability ``1 / burst_length`` after each packet, so a bad period lasts
``burst_length`` packets on average. The good→bad probability follows from the average rate:
``π_bad = (loss − good_loss) / (bad_loss − good_loss)`` and ``p_gb = p_bg · π_bad / (1 − π_bad)``.

:func:`clean_probability` gives, exactly, the probability that ``k`` consecutive packets all get
through (the chain in its stationary distribution at the first one): the weight of the "no loss"
stratum in :mod:`.stats`, and UDP's exact frame delivery probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("iid", "gilbert-elliott")


@dataclass(frozen=True)
class LossModel:
    """Average loss ``rate`` per packet; ``kind`` iid or gilbert-elliott (see module doc)."""

    rate: float
    kind: str = "iid"
    burst_length: float = 4.0
    bad_loss: float = 1.0
    good_loss: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"loss model kind must be one of {KINDS}, got {self.kind!r}")
        if not 0 <= self.rate < 1:
            raise ValueError(f"loss rate must be in [0, 1), got {self.rate}")
        if self.kind == "gilbert-elliott":
            if not self.burst_length >= 1:
                raise ValueError(f"burst_length must be >= 1 packet, got {self.burst_length}")
            if not 0 <= self.good_loss <= self.rate <= self.bad_loss <= 1:
                raise ValueError(
                    "Gilbert-Elliott needs good_loss <= rate <= bad_loss (loss probabilities in "
                    f"the two states), got {self.good_loss}, {self.rate}, {self.bad_loss}"
                )

    def chain(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Transition matrix ``T[from, to]`` over (good, bad), loss per state, stationary
        distribution. i.i.d. loss is the one-state special case written the same way."""
        if self.kind == "iid" or self.rate == 0:
            return np.ones((1, 1)), np.array([self.rate]), np.ones(1)
        span = self.bad_loss - self.good_loss
        pi_bad = (self.rate - self.good_loss) / span if span > 0 else 0.0
        p_bg = 1.0 / self.burst_length
        if pi_bad >= 1:
            return np.ones((1, 1)), np.array([self.bad_loss]), np.ones(1)
        p_gb = p_bg * pi_bad / (1 - pi_bad)
        if p_gb > 1:
            raise ValueError(
                f"loss rate {self.rate} with bursts of {self.burst_length} packets needs a "
                "good-to-bad probability above 1: shorten the bursts"
            )
        trans = np.array([[1 - p_gb, p_gb], [p_bg, 1 - p_bg]])
        return trans, np.array([self.good_loss, self.bad_loss]), np.array([1 - pi_bad, pi_bad])

    def describe(self) -> str:
        if self.kind == "iid":
            return "iid"
        return f"gilbert-elliott(burst={self.burst_length:g},bad_loss={self.bad_loss:g})"


def from_config(rate: float, spec) -> LossModel:
    """The loss model of a config's ``loss_model`` (``None`` / ``{kind: iid}`` / ``{kind:
    gilbert-elliott, burst_length, bad_loss, good_loss}``) at one average ``rate``."""
    spec = dict(spec or {})
    kind = spec.pop("kind", "iid")
    return LossModel(float(rate), kind, **{k: float(v) for k, v in spec.items()})


class PacketLoss:
    """The per-packet loss draws of one simulation run, in transmission order.

    i.i.d.: one uniform per packet, lost when ``u < rate``, so runs at different rates with one
    seed are coupled (a packet lost at p is lost at every p' > p). Gilbert–Elliott: the chain
    starts in its stationary distribution and takes one step per packet."""

    def __init__(self, model: LossModel, rng: np.random.Generator):
        self.model, self.rng = model, rng
        self._trans, self._loss, pi = model.chain()
        self._state = 0 if len(pi) == 1 else int(rng.random() < pi[1])

    def lost(self) -> bool:
        if self.model.rate == 0:
            return False
        if len(self._loss) == 1:
            return bool(self.rng.random() < self._loss[0])
        lost = bool(self.rng.random() < self._loss[self._state])
        self._state = int(self.rng.random() < self._trans[self._state, 1])
        return lost

    def frame(self, n: int) -> bool:
        """Whether any of the next ``n`` packets is lost (all ``n`` are drawn)."""
        if self.model.rate == 0:
            return False
        if len(self._loss) == 1:
            return bool((self.rng.random(n) < self._loss[0]).any())
        return any([self.lost() for _ in range(n)])


def clean_probability(model: LossModel, k: int) -> float:
    """P(``k`` consecutive packets all delivered), the chain stationary at the first one."""
    if k <= 0 or model.rate == 0:
        return 1.0
    trans, loss, pi = model.chain()
    keep = np.diag(1 - loss)
    # P = pi · D · (T · D)^(k-1) · 1: deliver the first, then step and deliver, k - 1 times
    step = np.linalg.matrix_power(trans @ keep, k - 1)
    return float(pi @ keep @ step @ np.ones(len(pi)))
