"""Replica configuration: the validator set and every bound, with defaults (all times in ms of the
driver's clock, all sizes in heights)."""

from __future__ import annotations

from dataclasses import dataclass

from .certificate import max_faulty
from .crypto import HASH_SIZE, PUBLIC_KEY_SIZE, key_id

__all__ = ["ReplicaConfig"]

_INT_FIELDS = ("checkpoint_interval", "window", "view_change_timeout_ms", "view_change_timeout_max_ms",
               "retransmit_ms", "state_transfer_delay_ms", "state_transfer_timeout_ms", "log_max")
_INT_LIMIT = 2**63  # every bound is a plain int well inside the u64 heights and views it is added to


@dataclass(frozen=True)
class ReplicaConfig:
    """``validators`` is ``((id, raw Ed25519 public key), ...)`` in genesis order; ``view % n`` indexes it.

    Watermarks: a replica handles ordering messages for heights in ``(stable, high]`` where
    ``high = min(committed + window, stable + log_max)`` and ``log_max = 2 * checkpoint_interval + window``
    (unless set): ``window`` bounds pipelining, ``log_max`` bounds the log when checkpoints lag.
    """

    chain: bytes
    validators: tuple[tuple[str, bytes], ...]
    checkpoint_interval: int = 16
    window: int = 8
    view_change_timeout_ms: int = 2000
    view_change_timeout_max_ms: int = 30000
    retransmit_ms: int = 1000  # re-send own unfinished votes / VIEW-CHANGE / heartbeat this often
    state_transfer_delay_ms: int = 1000  # a gap behind f+1 peers older than this triggers FetchState
    state_transfer_timeout_ms: int = 5000  # a FetchState unanswered this long is re-issued
    log_max: int = 0  # 0: 2 * checkpoint_interval + window

    def __post_init__(self) -> None:
        if type(self.chain) is not bytes or len(self.chain) != HASH_SIZE:
            raise ValueError("chain must be the 32-byte genesis hash")
        if type(self.validators) is not tuple or not self.validators:
            raise ValueError("validators must be a non-empty tuple of (id, public key) pairs")
        for entry in self.validators:
            if type(entry) is not tuple or len(entry) != 2:
                raise ValueError("validators must be a non-empty tuple of (id, public key) pairs")
            vid, pk = entry
            if type(vid) is not str or type(pk) is not bytes or len(pk) != PUBLIC_KEY_SIZE or key_id(pk) != vid:
                raise ValueError(f"validator {vid!r}: id must be key_id of its 32-byte public key")
        ids = [v for v, _ in self.validators]
        if len(set(ids)) != len(ids):
            raise ValueError("validator ids must be distinct")
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value < _INT_LIMIT:
                raise ValueError(f"{name} must be a non-negative integer (not a bool or float), got {value!r}")
        if self.checkpoint_interval < 1 or self.window < 1:
            raise ValueError("checkpoint_interval and window must be positive")
        if not 0 < self.view_change_timeout_ms <= self.view_change_timeout_max_ms:
            raise ValueError("0 < view_change_timeout_ms <= view_change_timeout_max_ms")
        if self.retransmit_ms < 1 or self.state_transfer_delay_ms < 0 or self.state_transfer_timeout_ms < 1:
            raise ValueError("retransmit_ms and state_transfer_timeout_ms must be positive")
        if self.log_max == 0:
            object.__setattr__(self, "log_max", 2 * self.checkpoint_interval + self.window)
        if self.log_max < self.checkpoint_interval + self.window:
            raise ValueError("log_max must be at least checkpoint_interval + window")

    @property
    def n(self) -> int:
        return len(self.validators)

    @property
    def f(self) -> int:
        return max_faulty(self.n)
