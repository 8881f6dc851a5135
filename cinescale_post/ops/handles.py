"""Removable model patches.

Every model change in this package (dilation, attention processors, FreeU
hooks, RoPE scaling...) is returned as a :class:`Handle`: a named object with
``remove()`` that puts the model back exactly as it was, and that is also a
context manager, so ``with apply_x(model, spec): ...`` restores the model even
when the body raises. Removing twice is a no-op.

Example::

    >>> import torch
    >>> conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    >>> with set_attributes(conv, "dilate", dilation=(2, 2), padding=(2, 2)):
    ...     conv.dilation
    (2, 2)
    >>> conv.dilation
    (1, 1)
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

_MISSING = object()


class Handle:
    """A removable patch. ``remove()`` restores; ``with handle:`` removes on exit.

    :param name: what the patch is, for logs and ``repr`` (``"dilation x2 on 9 convs"``).
    :param restore: called once by the first ``remove()``.
    """

    def __init__(self, name: str, restore: Callable[[], None] | None = None):
        self.name = name
        self._restore = restore
        self.active = True

    def remove(self) -> None:
        if not self.active:
            return
        self.active = False
        if self._restore is not None:
            self._restore()

    def __enter__(self) -> "Handle":
        return self

    def __exit__(self, *exc) -> bool:
        self.remove()
        return False

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"<{type(self).__name__} {self.name!r} {state}>"


class HandleGroup(Handle):
    """Several handles removed together, in reverse order of ``add``.

    Every member is removed even if one raises; the first error is re-raised
    after all have been tried.
    """

    def __init__(self, name: str = "group", handles: Iterable[Handle] = ()):
        super().__init__(name)
        self.handles: list[Handle] = list(handles)

    def add(self, handle: Handle) -> Handle:
        if not self.active:
            raise RuntimeError(f"{self!r} was already removed; create a new group")
        self.handles.append(handle)
        return handle

    def remove(self) -> None:
        if not self.active:
            return
        self.active = False
        first: BaseException | None = None
        for h in reversed(self.handles):
            try:
                h.remove()
            except BaseException as exc:  # noqa: BLE001 - keep restoring the rest
                first = first or exc
        if first is not None:
            raise first


def apply_each(name: str, targets: Iterable[Any], apply: Callable[[Any], Handle]) -> HandleGroup:
    """``apply(target)`` for every target (e.g. both experts of Wan 2.2), as
    one group; if one application fails, those already made are removed
    before the error propagates, so the models are never left half-patched."""
    group = HandleGroup(name)
    try:
        for target in targets:
            group.add(apply(target))
    except BaseException:
        group.remove()
        raise
    return group


def set_attributes(obj: Any, name: str, **values: Any) -> Handle:
    """Set attributes on ``obj`` now; the handle puts the old values back
    (or deletes attributes that did not exist)."""
    return patch_attributes([(obj, k, v) for k, v in values.items()], name)


def patch_attributes(changes: Iterable[tuple[Any, str, Any]], name: str) -> Handle:
    """Set ``(obj, attribute, value)`` triples; the handle restores them in
    reverse order. If setting fails halfway, what was set is restored before
    the error propagates."""
    saved: list[tuple[Any, str, Any]] = []

    def restore() -> None:
        for obj, attr, old in reversed(saved):
            if old is _MISSING:
                try:
                    delattr(obj, attr)
                except AttributeError:
                    pass
            else:
                setattr(obj, attr, old)

    try:
        for obj, attr, value in changes:
            saved.append((obj, attr, getattr(obj, attr, _MISSING)))
            setattr(obj, attr, value)
    except BaseException:
        restore()
        raise
    return Handle(name, restore)


def torch_hooks(hooks: Iterable[Any], name: str) -> Handle:
    """Wrap torch ``RemovableHandle`` objects (from ``register_forward_*hook``)."""
    hooks = list(hooks)

    def restore() -> None:
        for h in reversed(hooks):
            h.remove()

    return Handle(name, restore)


__all__ = ["Handle", "HandleGroup", "apply_each", "set_attributes", "patch_attributes", "torch_hooks"]
