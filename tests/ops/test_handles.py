import pytest

from cinescale_post.ops.handles import Handle, HandleGroup, patch_attributes, set_attributes


class Obj:
    a = 1


def test_set_attributes_restores_and_deletes_new_attributes():
    o = Obj()
    o.b = "x"
    h = set_attributes(o, "t", b="y", c=3)
    assert (o.b, o.c) == ("y", 3)
    h.remove()
    assert o.b == "x" and not hasattr(o, "c")
    h.remove()  # idempotent
    assert o.b == "x"


def test_context_manager_restores_on_exception():
    o = Obj()
    o.b = 1
    with pytest.raises(RuntimeError):
        with set_attributes(o, "t", b=2) as h:
            assert o.b == 2
            raise RuntimeError("boom")
    assert o.b == 1 and not h.active


def test_patch_attributes_failing_halfway_restores_what_was_set():
    class Locked:
        __slots__ = ("x",)

    o, lk = Obj(), Locked()
    o.b = 1
    lk.x = 0
    with pytest.raises(AttributeError):
        patch_attributes([(o, "b", 5), (lk, "y", 1)], "t")
    assert o.b == 1


def test_group_removes_in_reverse_order_even_if_one_fails():
    order = []

    def bad():
        order.append("bad")
        raise ValueError("x")

    g = HandleGroup("g")
    g.add(Handle("1", lambda: order.append(1)))
    g.add(Handle("bad", bad))
    g.add(Handle("3", lambda: order.append(3)))
    with pytest.raises(ValueError):
        g.remove()
    assert order == [3, "bad", 1]
    with pytest.raises(RuntimeError):
        g.add(Handle("late"))
