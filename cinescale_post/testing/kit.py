"""The plugin authors' kit: a fresh, isolated plugin host, a plan-like object
for driving a backend without the CLI, and render drivers around a model or
an adapter (the conformance suite is ``testing.conformance``)."""

from __future__ import annotations

def fresh_host(*plugins, entrypoints: bool = False, env: dict | None = None):
    """A new :class:`~cinescale_post.pipeline.host.Host` with the built-ins plus
    ``plugins`` (modules or objects with ``@hookimpl`` functions), registered
    directly, as ``cinescale`` would register entry points. Installed entry
    points are ignored unless ``entrypoints=True`` (then ``env`` stands in
    for the environment, e.g. ``{"CINESCALE_LOAD_PLUGINS": "example"}``).

    Example::

        from cinescale_example import plugin
        host = fresh_host(plugin)
        backend = host.backend("example-sd15")   # a render driver around the adapter, as in a render
    """
    from cinescale_post.pipeline.host import Host

    return Host(load_entrypoints=entrypoints, extra_plugins=tuple(plugins), env={} if env is None else env)


def make_test_plan(backend, *, model: str | None = None, stages=(), options: dict | None = None,
                   size: tuple[int, int] = (128, 128), mode: str = "render", prompt: str = "a photo of the cat",
                   negative_prompt: str = "blurry", dtype: str = "float32", device: str = "cpu", seed: int = 7,
                   frames: tuple[int, ...] = (1001,), source=None):
    """A plan-like object for ``backend.load(plan)``, ``render`` and
    ``generate`` without probing media or the CLI: the attributes a real
    :class:`~cinescale_post.pipeline.plan.Plan` has that backends read, with
    ``stages``/``options`` normalised by ``backend.validate`` (so a bad value
    raises ``PlanError`` here, as in ``plan.build``). ``size`` is the output
    (width, height)."""
    from types import SimpleNamespace

    st, opts = backend.validate(stages=tuple(stages), options=dict(options or {}), size=tuple(size), source=source)
    return SimpleNamespace(
        backend=backend.id, model=model, device=device, dtype=dtype, seed=seed, stages=tuple(st),
        backend_options=opts, output=SimpleNamespace(width=int(size[0]), height=int(size[1])), prompt=prompt,
        negative_prompt=negative_prompt, mode=mode, frames=tuple(frames), source=source, handles=0,
        window=SimpleNamespace(size=1, overlap=0, blend="linear"), memory={"available": False})


def model_driver(model, *, adapter_id: str = "test-model", tasks=("t2i", "v2v"), family: str = "unet",
                 layout: str = "image", plan=None, stages=None, options=None, **capabilities):
    """The core render driver around an already built :class:`~cinescale_post.api.Model`
    (tests, benchmarks): a throwaway adapter whose ``load`` returns ``model``,
    with the given declared capabilities; ``plan``/``stages``/``options`` as
    :meth:`~cinescale_post.render.driver.RenderDriver.use`."""
    from cinescale_post.builtin.lookup import builtin_resolve
    from cinescale_post.contracts.model import Capabilities, ModelAdapter
    from cinescale_post.render.driver import RenderDriver

    caps = Capabilities(tasks=frozenset(tasks), family=family, latent_layout=layout, **capabilities)

    class _Adapter(ModelAdapter):
        id = adapter_id
        capabilities = caps

        def load(self, plan):
            return model

    return RenderDriver(_Adapter(), resolve=builtin_resolve).use(model, plan, stages=stages, options=options)


def adapter_driver(adapter, *, resolve=None):
    """A new core render driver around a registered-style ``adapter`` (what
    ``Host.backend`` gives a render), optionally with an upscaler/fusion
    ``resolve(kind, name)`` lookup (default: the built-ins)."""
    from cinescale_post.builtin.lookup import builtin_resolve
    from cinescale_post.render.driver import RenderDriver

    return RenderDriver(adapter, resolve=resolve or builtin_resolve)


class conditioning_spy:
    """``with conditioning_spy(model) as spy:``, around a render of a loaded
    :class:`~cinescale_post.api.Model`: ``spy.made`` maps each conditioning the
    model made to its prompt, ``spy.used`` lists the prompt of every
    ``predict`` call's conditioning, in order (per-stage prompts: which stage
    saw which). The model's own methods are back on exit."""

    def __init__(self, model):
        self.model = model
        self.made: dict[int, str] = {}
        self.used: list[str | None] = []

    def __enter__(self):
        model, condition, predict = self.model, self.model.condition, self.model.predict

        def spy_condition(prompt, negative_prompt="", **kw):
            cond = condition(prompt, negative_prompt, **kw)
            self.made[id(cond)] = prompt
            return cond

        def spy_predict(x, t, cond, **kw):
            self.used.append(self.made.get(id(cond)))
            return predict(x, t, cond, **kw)

        model.condition, model.predict = spy_condition, spy_predict
        return self

    def __exit__(self, *exc):
        del self.model.condition, self.model.predict  # the instance attributes: the class's methods again
        return False
