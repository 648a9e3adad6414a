"""An environment's stored network fields as the proxy's :class:`NetworkPolicy` (pure)."""

from __future__ import annotations

from execution.models import Environment
from shared.egress.network_policy import PRESETS, NetworkPolicy, parse_rules


def phase_policy(environment: Environment, phase: str) -> NetworkPolicy:
    """``phase``: "setup" or "agent". The rules were checked when saved; a mode without rules reaches no extra host."""
    mode = getattr(environment, f"{phase}_network_mode")
    if phase == "agent" and mode == "observe":
        mode = "off"
    return NetworkPolicy(
        mode=mode,
        presets=tuple(p for p in getattr(environment, f"{phase}_network_presets") or () if p in PRESETS),
        rules=parse_rules(getattr(environment, f"{phase}_network_rules") or "") if mode == "rules" else (),
        read_only=getattr(environment, f"{phase}_network_read_only"),
    )
