"""A stand-in for Nuke's ``nuke`` module that records what is called, with
the documented behaviour the integration relies on:

* nodes are created and changed only in the main thread (real Nuke crashes or
  raises otherwise): every node/knob/message call asserts it;
* ``executeInMainThread(call, args=(), kwargs={})`` queues the call for the
  main thread's event loop (``run_main_thread_queue`` plays that loop);
* ``ProgressTask`` may be used from any thread; ``isCancelled`` is what the
  artist's Cancel button sets;
* ``selectedNode()`` raises ValueError when nothing is selected;
  ``scriptName()`` raises RuntimeError for an unsaved script;
* ``execute(write, first, last, incr)`` renders the Write node: here it
  writes real EXR frames of its input's test pattern to the knob's path.
"""

from __future__ import annotations

import queue
import threading
import types

calls: list[tuple] = []
_main_queue: queue.Queue = queue.Queue()
state = types.SimpleNamespace(selected=None, script="", cancel_after_frames=None, progress_tasks=[],
                              all_nodes=[], messages=[], root_knobs={})
env = {"gui": False}


def _main_only(what: str) -> None:
    assert threading.current_thread() is threading.main_thread(), f"nuke.{what} called outside the main thread"


class Knob:
    def __init__(self, node, name, value=None):
        self.node, self.name, self._value = node, name, value

    def value(self):
        return self._value

    def setValue(self, value):
        _main_only(f"{self.node.Class()}['{self.name}'].setValue")
        calls.append(("setValue", self.node.name(), self.name, value))
        self._value = value
        return True


class Node:
    def __init__(self, cls: str, name: str, first: int = 1, last: int = 1, **knobs):
        self._class, self._name = cls, name
        self._first, self._last = first, last
        self._xy = (0, 0)
        self.inputs: dict[int, Node] = {}
        self.knobs: dict[str, Knob] = {k: Knob(self, k, v) for k, v in knobs.items()}

    def __getitem__(self, name):
        if name not in self.knobs:  # real Nuke raises NameError for an unknown knob; new nodes have them all
            if self in state.all_nodes and self._class in ("Read", "Write"):
                self.knobs[name] = Knob(self, name, None)
            else:
                raise NameError(name)
        return self.knobs[name]

    def Class(self):
        return self._class

    def name(self):
        return self._name

    def firstFrame(self):
        return self._first

    def lastFrame(self):
        return self._last

    def xpos(self):
        return self._xy[0]

    def ypos(self):
        return self._xy[1]

    def setXYpos(self, x, y):
        _main_only("setXYpos")
        self._xy = (x, y)

    def setInput(self, i, node):
        _main_only("setInput")
        self.inputs[i] = node
        return True


class _Nodes:
    def __getattr__(self, cls):
        def create(**knobs):
            _main_only(f"nodes.{cls}")
            node = Node(cls, f"{cls}{len(state.all_nodes) + 1}")
            state.all_nodes.append(node)
            for k, v in knobs.items():
                node[k].setValue(v)
            calls.append(("create", cls, node.name()))
            return node
        return create


nodes = _Nodes()


def selectedNode():
    _main_only("selectedNode")
    if state.selected is None:
        raise ValueError("no node selected")
    return state.selected


def root():
    """The script's Root node; ``state.root_knobs`` sets its colour knobs
    (workingSpaceLUT, colorManagement, OCIO_config, customOCIOConfigPath)."""
    return Node("Root", "root", **{"int8Lut": "sRGB", **state.root_knobs})


def scriptName():
    if not state.script:
        raise RuntimeError("no script name")
    return state.script


def execute(node, first, last, incr=1):
    """Render a Write node: the fake writes the input node's frames as EXRs."""
    _main_only("execute")
    from cinescale_post.testing import make_sequence

    calls.append(("execute", node.name(), first, last, incr))
    assert node.Class() == "Write" and node["file_type"].value() == "exr"
    make_sequence(node["file"].value(), range(first, last + 1), size=(48, 32), half=True)


def delete(node):
    _main_only("delete")
    calls.append(("delete", node.name()))
    state.all_nodes.remove(node)


def message(text):
    _main_only("message")
    calls.append(("message", text))
    state.messages.append(text)


def getInput(prompt, default=""):
    _main_only("getInput")
    return default


def executeInMainThread(call, args=(), kwargs=None):
    calls.append(("executeInMainThread", getattr(call, "__name__", str(call)),
                  threading.current_thread() is threading.main_thread()))
    _main_queue.put((call, tuple(args), dict(kwargs or {})))


def run_main_thread_queue():
    """What Nuke's event loop does with queued calls (call from the test's main thread)."""
    out = []
    while True:
        try:
            call, args, kwargs = _main_queue.get_nowait()
        except queue.Empty:
            return out
        out.append(call(*args, **kwargs))


class ProgressTask:
    def __init__(self, title):
        self.title = title
        self.progress: list[int] = []
        self.messages: list[str] = []
        self.cancelled = False
        state.progress_tasks.append(self)

    def setProgress(self, pct):
        assert isinstance(pct, int) and 0 <= pct <= 100, pct
        self.progress.append(pct)
        n = state.cancel_after_frames
        if n is not None and len([p for p in self.progress if p < 100]) >= n:
            self.cancelled = True  # the artist presses Cancel

    def setMessage(self, text):
        self.messages.append(text)

    def isCancelled(self):
        return self.cancelled


class _Menu:
    def __init__(self, name):
        self.name = name

    def addMenu(self, name, **kw):
        calls.append(("addMenu", self.name, name))
        return _Menu(f"{self.name}/{name}")

    def addCommand(self, name, command, shortcut="", **kw):
        calls.append(("addCommand", self.name, name, command))


def menu(name):
    return _Menu(name)


def reset():
    calls.clear()
    while not _main_queue.empty():
        _main_queue.get_nowait()
    state.selected, state.script, state.cancel_after_frames = None, "", None
    state.progress_tasks.clear()
    state.all_nodes.clear()
    state.messages.clear()
    state.root_knobs = {}
