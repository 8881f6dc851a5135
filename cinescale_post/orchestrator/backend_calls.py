"""Calling a render's backend and reader from the orchestrator: a plugin's failure
becomes a ``PluginError`` naming it, library output is routed into our log while
weights load, and a reader's substituted frames go into the manifest."""

from __future__ import annotations

from cinescale_post.contracts.errors import CinescaleError, PluginError
from cinescale_post.orchestrator.manifest import Manifest
from cinescale_post.orchestrator.assembly import assemble_movie  # noqa: F401 - assemble_movie: public API


def call_plugin(host, backend, what: str, fn, *args, **kwargs):
    """Call a backend method; any failure that is not one of ours becomes a
    PluginError naming the backend and the plugin that registered it."""
    try:
        return fn(*args, **kwargs)
    except CinescaleError:
        raise
    except Exception as exc:
        owner = host.owner("backends", backend.id) or "?"
        raise PluginError(f"backend {backend.id!r} (plugin {owner}) failed in {what}: {type(exc).__name__}: {exc}",
                          fix="nothing was published for the frames it was working on; report it to the "
                              "plugin's authors (`cinescale plugins` shows its version)") from exc


def load_backend(host, backend, plan, warn) -> dict:
    """Load weights, then adopt the memory plan's VAE tiles and offload.
    Library bars and warnings go to our log (``orchestrator.third_party_output``; the manifest key ``library_output``); returns
    their counts for the manifest."""
    from cinescale_post.orchestrator.third_party_output import routed

    with routed() as lib:
        call_plugin(host, backend, "load", backend.load, plan)
        if plan.memory.get("available"):
            desc = call_plugin(host, backend, "apply_memory_choice", backend.apply_memory_choice,
                               dict(plan.memory["choice"]))
            if desc:
                warn(f"memory plan: {desc}")
    return lib.to_dict()


def plugin_versions(host) -> dict:
    return {r.name: r.version for r in host.records if r.error is None}


def open_reader(plan, host):
    """The source, opened with the plan's read policy and its probed frame
    table (a movie is not indexed again in every task)."""
    from cinescale_post.media.probe import open_input

    return open_input(plan.input, first_frame=plan.source.first_frame, host=host, policy=plan.read_policy,
                      planned=plan.source)


def record_substitutions(manifest: Manifest, reader, sink) -> None:
    """Frames a reader replaced (``--on-bad-frame`` / ``--missing``): one
    warning each, and a record in this process's unit log, which
    :func:`substituted_frames` gathers for the manifest."""
    subs = reader.substitutions()
    if not subs:
        return
    for number, how in sorted(subs.items()):
        sink.emit("warning", message=f"frame {number} of {reader.info.path} substituted: {how}")
    manifest.log_substitutions(subs)


__all__ = ["call_plugin", "load_backend", "open_reader", "plugin_versions", "record_substitutions"]
