"""``backend_options.context_parallel``: validated at plan time, without torch
(the model change is ``ops.context_parallel``, the processes ``ops.distributed``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from cinescale_post.contracts.errors import PlanError

WHERE = "backend_options.context_parallel"
CP_KEYS = ("ulysses", "ring", "attention_backend", "anything")
# diffusers 0.42 attention backends that support context parallelism, minus the
# ``*_hub`` ones (they download kernels at run time; this tool never downloads).
CP_BACKENDS = ("native", "_native_cudnn", "_native_flash", "flash", "sage", "_native_npu")
# Those whose kernel returns the log-sum-exp (needed by ring attention).
LSE_BACKENDS = ("_native_cudnn", "_native_flash", "flash", "sage", "_native_npu")
MAX_DEGREE = 1024


@dataclass(frozen=True)
class ContextParallelSpec:
    """Validated ``backend_options.context_parallel``.

    ``ulysses``/``ring``: degrees (>= 1; their product is the number of
    processes). ``attention_backend``: "auto" or a diffusers backend name from
    :data:`CP_BACKENDS`. ``anything``: diffusers' uneven split ("Ulysses
    anything" / "Ring anything") for token counts or head counts that do not
    divide.
    """

    ulysses: int = 1
    ring: int = 1
    attention_backend: str = "auto"
    anything: bool = False

    @property
    def degree(self) -> int:
        return self.ulysses * self.ring

    @property
    def enabled(self) -> bool:
        return self.degree > 1

    def to_dict(self) -> dict:
        d: dict = {}
        if self.ulysses > 1:
            d["ulysses"] = self.ulysses
        if self.ring > 1:
            d["ring"] = self.ring
        if self.attention_backend != "auto":
            d["attention_backend"] = self.attention_backend
        if self.anything:
            d["anything"] = True
        return d

    def describe(self) -> str:
        parts = [f"{k} {v}" for k, v in (("ulysses", self.ulysses), ("ring", self.ring)) if v > 1]
        return " x ".join(parts) or "off"


def parse_context_parallel(value: Any, where: str = WHERE) -> ContextParallelSpec:
    """Validate the option (a table, or ``{}`` for off); raise PlanError
    naming the key, the value and what is allowed. No torch import.

    >>> parse_context_parallel({"ulysses": 8}).degree
    8
    >>> parse_context_parallel({}).enabled
    False
    """
    if isinstance(value, ContextParallelSpec):
        return value
    if value is None:
        return ContextParallelSpec()
    if not isinstance(value, Mapping):
        raise PlanError(f"{where} = {value!r} must be a table",
                        fix='e.g. {ulysses = 8} or {ring = 8} (or --set backend_options.context_parallel.ulysses=8)')
    unknown = sorted(set(value) - set(CP_KEYS))
    if unknown:
        raise PlanError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}",
                        fix=f"use only: {', '.join(CP_KEYS)}")
    deg = {}
    for k in ("ulysses", "ring"):
        v = value.get(k, 1)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_DEGREE:
            raise PlanError(f"{where}.{k} = {v!r}", fix=f"use an integer in 1..{MAX_DEGREE} (processes along {k})")
        deg[k] = v
    be = value.get("attention_backend", "auto")
    if be != "auto" and be not in CP_BACKENDS:
        raise PlanError(f"{where}.attention_backend = {be!r}",
                        fix=f"use one of: auto, {', '.join(CP_BACKENDS)}")
    anything = value.get("anything", False)
    if not isinstance(anything, bool):
        raise PlanError(f"{where}.anything = {anything!r} must be true or false")
    spec = ContextParallelSpec(ulysses=deg["ulysses"], ring=deg["ring"], attention_backend=be, anything=anything)
    if value and not spec.enabled:
        raise PlanError(f"{where} = {dict(value)!r} splits over 1 process",
                        fix="give ulysses and/or ring > 1, or leave context_parallel out")
    if spec.anything and spec.ulysses > 1 and spec.ring > 1:
        raise PlanError(f"{where}.anything = true with ulysses {spec.ulysses} and ring {spec.ring}",
                        fix="uneven splits work with one kind only: use ulysses or ring, not both")
    if spec.ring > 1 and be != "auto" and be not in LSE_BACKENDS:
        raise PlanError(f"{where}.attention_backend = {be!r} cannot run ring attention (no log-sum-exp)",
                        fix=f"use one of: auto, {', '.join(LSE_BACKENDS)}; or ulysses instead of ring")
    return spec
