"""The plugin contract of cinescale-post.

Plugins are modules (or objects) registered with a ``pluggy`` manager whose
project name is ``"cinescale_post"``. Third-party distributions declare them
under the entry-point group ``cinescale_post``::

    [project.entry-points.cinescale_post]
    mybackend = "cinescale_post_mybackend.plugin"

and implement any of the hooks below with :data:`hookimpl`::

    from cinescale_post.api import hookimpl

    @hookimpl
    def register_backends(register):
        register(MyModelAdapter())

Rules every hook follows:

* Hooks *deliver objects*; the objects do the work. No hook is ever called
  inside a frame loop or a denoising loop; registration hooks run once, when
  the host first needs that kind of object.
* Hooks are called with keyword arguments only; an implementation may accept
  any subset of the documented arguments, so new arguments can be added
  without breaking plugins.
* A misspelled hook name is an error (``PluginManager.check_pending``): the
  plugin is reported by ``cinescale plugins`` and not used.
* A plugin that raises during registration, or registers an object missing
  the required attributes, is reported with its name and the error, and the
  rest of the plugins keep working.
* Built-in readers, writers, upscalers, the draft backend and the shipped
  presets are registered through these same hooks.
"""

from __future__ import annotations

import pluggy

PROJECT = "cinescale_post"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- registration


@hookspec
def register_backends(register):
    """Register rendering backends.

    Called once, the first time the host needs a backend (planning a render,
    ``cinescale plugins``). Registration must be cheap: do not load weights.

    :param register: ``register(obj)``, where ``obj`` is either

        * a :class:`cinescale_post.api.ModelAdapter` (a diffusion model family:
          unique ``id``, declared ``capabilities``); the host checks the
          declaration and wraps it in a fresh core render driver for every
          render, or
        * a :class:`cinescale_post.api.Backend` (an engine that renders whole
          windows itself: ``id``, ``family``, ``frame_rule``, ``load``,
          ``render``), such as the classical draft engine.

        ``contracts/engine.py`` says how the two relate. An incomplete object is
        refused, naming the plugin.
    :return: nothing.
    """


@hookspec
def register_upscalers(register):
    """Register upscalers: how an image or a stage result is enlarged.

    Called once, when an upscaler is first looked up.

    :param register: ``register(upscaler)``, an instance of
        :class:`cinescale_post.api.Upscaler` (declared ``name``, ``space`` =
        "pixel" or "latent", ``via_pixels``; callable ``(x, size) -> x``).
    :return: nothing.
    """


@hookspec
def register_fusions(register):
    """Register fusion operators for global/local attention (scale fusion...).

    Called once, when a fusion is first looked up.

    :param register: ``register(fusion)``; ``fusion`` has a unique ``name``
        and is applied by the cascade engine to the attention modules a
        backend declares in its patch points.
    :return: nothing.
    """


@hookspec
def register_readers(register):
    """Register media readers.

    Called once, when an input is first opened or probed.

    :param register: ``register(factory)`` with a
        :class:`cinescale_post.api.ReaderFactory`; the highest
        ``priority`` factory whose ``accepts(path)`` is true opens the input.
    :return: nothing.
    """


@hookspec
def register_writers(register):
    """Register media writers.

    Called once, when a plan resolves its output codec.

    :param register: ``register(factory)`` with a
        :class:`cinescale_post.api.WriterFactory`; each codec name may
        be claimed by one factory only (a duplicate is reported).
    :return: nothing.
    """


@hookspec
def register_presets(register):
    """Register preset files (TOML) a plugin ships for its backends.

    Called once, when presets are listed or resolved.

    :param register: ``register(path)``, a ``pathlib.Path`` or an
        ``importlib.resources`` traversable of one ``.toml`` file; its stem is
        the preset name.
    :return: nothing.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``cinescale`` command line.

    Called once, when the CLI is built.

    :param cli: the root ``click.Group``; call ``cli.command()`` /
        ``cli.add_command``.
    :return: nothing.
    """


# ---------------------------------------------------------------- decisions


@hookspec(firstresult=True)
def resolve_weights(spec):
    """Map a model reference to local weights (first answer wins).

    Called while a plan is built when ``model`` is not an existing local path
    (e.g. ``"studio:sdxl-base@3"``). The default is to treat ``spec`` as a path.

    :param spec: the string given by ``--model`` or the preset's ``model``.
    :return: a local path (``str``) to a diffusers folder or single file, or
        ``None`` to let the next plugin answer.
    """


# ---------------------------------------------------------------- lifecycle


@hookspec
def render_started(plan):
    """A render is about to process its first chunk.

    :param plan: the frozen :class:`cinescale_post.pipeline.plan.Plan`.
    :return: nothing. Exceptions are logged and otherwise ignored.
    """


@hookspec
def chunk_finished(plan, chunk):
    """A chunk of frames was rendered and published.

    :param plan: the frozen plan.
    :param chunk: a dict with ``id``, ``frames`` (list of plate numbers),
        ``files`` (published paths) and ``seconds``.
    :return: nothing. Exceptions are logged and otherwise ignored.
    """


@hookspec
def render_finished(plan, summary):
    """A render ended (finished, interrupted or failed).

    :param plan: the frozen plan.
    :param summary: a dict with ``status`` ("finished", "interrupted",
        "failed"), ``frames_done``, ``frames_total``, ``seconds`` and
        ``outputs``.
    :return: nothing. Exceptions are logged and otherwise ignored.
    """
