"""The ``cinescale`` command line: parse, build a plan, run it.

Errors are converted to messages and exit codes in one place (``main``):
each ``CinescaleError`` carries its exit code (see ``errors.EXIT_CODES``).
Set ``CINESCALE_RAISE_ERRORS=1`` to get tracebacks instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys

import click

from cinescale_post import __version__
from cinescale_post.cli.context import PROGRESS_MODES, command_host as _host, model_argument
from cinescale_post.contracts.errors import EXIT_CODES, CinescaleError

log = logging.getLogger("cinescale_post")



@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cinescale")
@click.option("--no-plugins", is_flag=True, help="Load built-in plugins only (ignore installed entry points).")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.pass_context
def cli(ctx, no_plugins, verbose):
    """Upscale clips to 4K cinematic masters with CineScale (training-free
    diffusion upscaling), or with the classical draft engine.

    \b
    Exit codes: 0 done; 1 internal error; 2 usage; 3 input missing/undecodable;
    4 output not writable; 5 out of GPU memory; 6 weights missing;
    75 temporary failure; 130/143 interrupted (run again to resume).
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.ensure_object(dict)["no_plugins"] = no_plugins


@contextlib.contextmanager
def _reported(sink):
    """Planning errors reach JSON/plain progress consumers as ``error`` events
    too (run-time errors are emitted by the orchestrator itself)."""
    try:
        yield
    except CinescaleError as exc:
        sink.emit("error", message=str(exc), exit_code=exc.exit_code)
        raise


def _planning_card(gpu, dry_run, as_json, simulate):
    """The card ``--gpu`` names (issue 16), after checking the dry-run flags."""
    if (gpu or as_json or simulate) and not dry_run:
        raise click.UsageError("--gpu, --json and --simulate describe a plan: use them with --dry-run")
    if not gpu:
        return None
    from cinescale_post.simulate.cards import card

    try:
        return card(gpu)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gpu") from None


@contextlib.contextmanager
def _free_memory_of(card):
    """Plan for ``card``'s memory (the planner reads CINESCALE_FREE_MEMORY)."""
    if card is None:
        yield
        return
    old = os.environ.get("CINESCALE_FREE_MEMORY")
    os.environ["CINESCALE_FREE_MEMORY"] = str(card.memory_bytes)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CINESCALE_FREE_MEMORY", None)
        else:
            os.environ["CINESCALE_FREE_MEMORY"] = old


def _dry_run(plan, host, card, as_json, simulate):
    """--dry-run: the plan JSON on stdout and the estimate on stderr, or with
    --json one object {plan, estimate}; --simulate adds the real-size simulation."""
    from cinescale_post.simulate.report import estimate, format_estimate

    sim = None
    if simulate:
        from cinescale_post.simulate.simulation import simulate_plan

        sim = simulate_plan(plan, host)
    est = estimate(plan, card, sim)
    if as_json:
        click.echo(json.dumps({"plan": json.loads(plan.to_json()), "estimate": est}, indent=2, default=str))
    else:
        click.echo(plan.to_json())
        click.echo(format_estimate(est), err=True)


_OUTPUT_HELP = ("Movie file (out.mov) or frame pattern (out/sh010.####.exr; %04d, @@@@, $F4 also work). "
                "Where the preset's codec cannot write the suffix, the suffix picks one: .png png16, "
                ".tif tiff16, .exr exr, .mov prores_hq, .mp4 h264_10, .mxf dnxhr_hqx.")


def _plan_options(f=None, *, generate: bool = False):
    if f is None:
        return lambda g: _plan_options(g, generate=generate)
    preset = (click.option("-p", "--preset", default=None,
                           help="Preset name (`cinescale presets list`) or a .toml path. Default: chosen from "
                                "--model's model_index.json (SDXL, SDXL-Turbo: the still preset for --size; "
                                "Wan: the t2v preset for --size).")
              if generate else
              click.option("-p", "--preset", default="uhd-draft", show_default=True,
                           help="Preset name (`cinescale presets list`) or a .toml path."))
    for opt in reversed([
        click.option("-o", "--output", required=True, help=_OUTPUT_HELP),
        preset,
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a preset key, e.g. --set output.codec=prores_4444 --set stages.1.steps=30."),
        click.option("--model", help="Local weights: a diffusers folder or a .safetensors file; with --dry-run also "
                                     "sdxl-base, sdxl-turbo, wan2.1-t2v-1.3b or wan2.1-t2v-14b (published configs)."),
        click.option("--seed", type=int, help="Seed (per-frame seeds derive from it and the frame number)."),
        click.option("--device", help="cpu, cuda, cuda:1 ... (default: the preset's, 'auto').", default=None),
        click.option("--dry-run", is_flag=True, help="Print the resolved plan as JSON and exit 0 (per-stage memory "
                                                     "estimate, tile/window choice, fit and time on the card at "
                                                     "40% utilisation on stderr)."),
        click.option("--gpu", metavar="CARD", help="With --dry-run: plan for h100, h200, a100, a800, 4090 or a size "
                                                   "in GiB (e.g. 48) instead of this machine's device."),
        click.option("--json", "as_json", is_flag=True, help="With --dry-run: one JSON object {plan, estimate} on "
                                                             "stdout (farm submitters)."),
        click.option("--simulate", is_flag=True, help="With --dry-run: simulate this exact plan at real size on "
                                                      "meta tensors (FLOPs, peaks, time per stage; ~1 min)."),
        click.option("--progress", type=click.Choice(PROGRESS_MODES), default="auto", show_default=True,
                     help="bar: terminal bar; json: JSON lines on stdout; plain: PROGRESS n% lines."),
    ]):
        f = opt(f)
    return f


@cli.command()
@click.argument("input")
@_plan_options
@click.option("--frames", help="Frame set: 1001-1100, 1001-1100x2, 1001,1005-1010 (clamped to what exists).")
@click.option("--start", type=int, help="First frame to render (with --end).")
@click.option("--end", type=int, help="Last frame to render.")
@click.option("--first-frame", type=int, default=1001, show_default=True,
              help="Plate number of a movie's first frame.")
@click.option("--handles", type=int, default=0, show_default=True,
              help="Extra frames read on each side of every window for temporal context, never written.")
@click.option("--prompt", help="Per-shot prompt for diffusion backends.")
@click.option("--overwrite", is_flag=True, help="Replace an output rendered with another plan or input.")
@click.option("--verify", is_flag=True, help="Check finished files by content hash before skipping them.")
@click.option("--executor", default="local", show_default=True,
              help="local, or ray (pip install 'cinescale-post[ray]'): one task per chunk on a Ray cluster.")
@click.option("--executor-address", "--address", "executor_address", metavar="ADDRESS",
              help="Ray cluster for --executor ray (ray://head:10001, head:6379, auto); "
                   "default: RAY_ADDRESS, else a local cluster.")
@click.option("--no-assemble", is_flag=True, help="Leave movie chunks for `cinescale assemble`.")
@click.option("--job-frames", metavar="FRAMES",
              help="Farm tasks: every frame of the job this task is part of (e.g. 1001-1240). Windows "
                   "another task starts are left to it and shared frames handed on, so each window is "
                   "rendered once.")
@click.option("--audio", type=click.Choice(["copy", "pcm", "none"]), default=None,
              help="Source audio in a movie master: copy by packet (PCM at the source rate and layout "
                   "where the container cannot hold the codec), pcm, or none. Default: the preset's (copy).")
@click.option("--on-bad-frame", type=click.Choice(["error", "hold", "black"]), default=None,
              help="A movie frame that cannot be decoded, or frames a truncated file lost: error (default), "
                   "hold the nearest earlier frame, or black. Substituted frames are listed in the manifest.")
@click.option("--missing", type=click.Choice(["error", "black", "hold", "checkerboard"]), default=None,
              help="Holes in an image sequence: error (default), black, hold, checkerboard; numbering stays "
                   "the source's (also holes in a --matte sequence).")
@click.option("--matte", metavar="SOURCE",
              help="Where the model may change the plate: an image, a sequence (roto.####.exr), a movie or "
                   "'alpha'; matte.mode both|detail|holdout (outside: the draft), matte.channel auto|A|R|luma.")
@click.pass_context
def render(ctx, input, output, preset, overrides, model, seed, device, dry_run, gpu, as_json, simulate, progress,
           frames, start, end, first_frame, handles, prompt, overwrite, verify, executor, executor_address,
           no_assemble, job_frames, audio, on_bad_frame, missing, matte):
    """Render INPUT (movie or frame pattern) to OUTPUT. Running the same
    command again resumes: finished, verified frames and chunks are kept."""
    import cinescale_post.pipeline.plan as plan_mod
    from cinescale_post.orchestrator.progress import make_sink
    from cinescale_post.orchestrator.render_job import run

    if executor_address and executor != "ray":
        raise click.UsageError("--executor-address needs --executor ray")
    host = _host(ctx)
    sink = make_sink(progress)
    ctx.obj["sink"] = sink
    card = _planning_card(gpu, dry_run, as_json, simulate)
    with _reported(sink), _free_memory_of(card):
        plan = plan_mod.build(preset, host=host, input=input, output=output, overrides=overrides,
                              first_frame=first_frame, frames=frames, start=start, end=end, handles=handles,
                              model=model_argument(model, dry_run), seed=seed,
                              device=device or ("cuda" if card else None), prompt=prompt,
                              audio=audio,
                              on_bad_frame=on_bad_frame, missing=missing, matte=matte)
        job = plan_mod.select_frames(plan.source, frames=job_frames, start=None, end=None)[0] if job_frames else None
    if dry_run:
        _dry_run(plan, host, card, as_json, simulate)
        return
    from cinescale_post.orchestrator.progress import summary_line
    from cinescale_post.orchestrator.spelling import respell_error

    sink.name_output(plan.output.path, output)  # messages say tt/f.####.exr if that is what was typed
    try:
        summary = run(plan, host, sink, overwrite=overwrite, verify=verify, executor=executor,
                      executor_options={"address": executor_address} if executor_address else None,
                      assemble=not no_assemble, job_frames=job)
    except CinescaleError as exc:
        raise respell_error(exc, sink.spelling)
    if progress in ("auto", "bar"):  # none: silent apart from warnings and errors
        click.echo(summary_line(summary, plan, sink.spelling), err=True)


@cli.command()
@click.option("--prompt", required=True, help="What to generate.")
@click.option("--size", help="WIDTHxHEIGHT of the final image, e.g. 4096x4096.")
@_plan_options(generate=True)
@click.pass_context
def generate(ctx, prompt, size, output, preset, overrides, model, seed, device, dry_run, gpu, as_json, simulate,
             progress):
    """Generate a still (up to 8K) or a clip from a prompt with a diffusion backend."""
    import cinescale_post.pipeline.plan as plan_mod
    from cinescale_post.orchestrator.generate import run_generate
    from cinescale_post.orchestrator.progress import make_sink

    host = _host(ctx)
    wh = None
    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
            wh = (w, h)
        except ValueError:
            raise click.BadParameter(f"{size!r}: use WIDTHxHEIGHT, e.g. 4096x4096", param_hint="--size")
    sink = make_sink(progress)
    ctx.obj["sink"] = sink
    card = _planning_card(gpu, dry_run, as_json, simulate)
    with _reported(sink), _free_memory_of(card):
        plan = plan_mod.build(preset, host=host, output=output, overrides=overrides,
                              model=model_argument(model, dry_run), seed=seed,
                              device=device or ("cuda" if card else None), prompt=prompt, mode="generate", size=wh)
    if dry_run:
        _dry_run(plan, host, card, as_json, simulate)
        return
    from cinescale_post.orchestrator.spelling import respell_error

    sink.name_output(plan.output.path, output)
    try:
        paths = run_generate(plan, host, sink)
    except CinescaleError as exc:
        raise respell_error(exc, sink.spelling)
    click.echo("\n".join(paths), err=progress == "json")


@cli.command()
@click.argument("input")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--first-frame", type=int, default=1001, show_default=True)
@click.pass_context
def probe(ctx, input, as_json, first_frame):
    """Show what a clip or frame sequence holds: size, rate, frames, colour, timecode, audio."""
    from cinescale_post.media.probe import format_probe, probe as probe_fn, probe_dict

    info = probe_fn(input, first_frame=first_frame, host=_host(ctx))
    click.echo(json.dumps(probe_dict(info), indent=2) if as_json else format_probe(info))


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("-o", "--output", help="Final movie (default: the render's output path).")
@click.option("--no-audio", is_flag=True, help="Do not copy the source audio.")
@click.option("--audio", type=click.Choice(["copy", "pcm", "none"]), default=None,
              help="Source audio: copy (PCM where the master's container cannot hold the codec), pcm, none "
                   "(default: the render's choice).")
@click.pass_context
def assemble(ctx, manifest, output, no_audio, audio):
    """Join a render's chunk movies into the final movie, by packet copy, with audio and timecode."""
    from cinescale_post.contracts.errors import InputError
    from cinescale_post.media.probe import probe as probe_fn
    from cinescale_post.orchestrator.manifest import Manifest
    from cinescale_post.orchestrator.assembly import assemble_movie

    try:
        data = json.loads(open(manifest, encoding="utf-8").read())
        plan = data["plan"]
        out_path = plan["output"]["path"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{manifest} is not a cinescale manifest ({exc})",
                         fix="pass the <output>.manifest.json written by `cinescale render`") from exc
    if plan["output"]["kind"] != "movie":
        from cinescale_post.orchestrator.spelling import as_written

        frames = as_written(data, os.path.join(os.path.dirname(manifest), os.path.basename(out_path)))
        raise InputError(f"{manifest}: a frame-sequence render ({frames}) needs no assembly",
                         fix="its frames are already in place")
    m = Manifest(out_path)
    if m.path.resolve() != os.path.abspath(manifest):
        m = Manifest(str(os.path.join(os.path.dirname(os.path.abspath(manifest)), os.path.basename(out_path))))
    source = probe_fn(plan["input"], first_frame=plan["source"]["first_frame"], host=_host(ctx))
    mode = "none" if no_audio else audio or plan["output"].get("audio_mode") or plan["output"]["audio"]
    final = assemble_movie(m, source, output or out_path, audio=mode)
    click.echo(final)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx, as_json):
    """List plugins, their versions, hooks and load failures."""
    host = _host(ctx)
    records = host.describe()
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for r in records:
        state = "FAILED: " + r["error"] if r["error"] else ", ".join(r["hooks"])
        click.echo(f"{r['name']:<20} {r['version'] or '-':<10} {r['kind']:<10} {state}")
    click.echo(f"\nbackends: {', '.join(sorted(host.backends()))}")
    click.echo(f"codecs:   {', '.join(sorted(host.writers()))}")
    click.echo(f"upscalers: {', '.join(sorted(host.upscalers()))}")
    if host.fusions():
        click.echo(f"fusions:  {', '.join(sorted(host.fusions()))}")


@cli.group()
def presets():
    """List and show presets."""


@presets.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def presets_list(ctx, as_json):
    """Every preset that can be named, with its description."""
    import cinescale_post.pipeline.presets as presets_mod

    host = _host(ctx)
    rows = []
    for name, origin in presets_mod.available(host).items():
        try:
            desc = presets_mod.load(name, host).data.get("description", "")
        except CinescaleError as exc:
            desc = f"(unreadable: {exc})"
        rows.append({"name": name, "origin": origin, "description": desc})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for r in rows:
            click.echo(f"{r['name']:<24} {r['description']}")


@presets.command("show")
@click.argument("name")
@click.pass_context
def presets_show(ctx, name):
    """Print a preset's file."""
    import cinescale_post.pipeline.presets as presets_mod

    src = presets_mod.load(name, _host(ctx))
    click.echo(f"# {src.origin}")
    from pathlib import Path

    try:
        click.echo(Path(src.origin).read_text(encoding="utf-8"))
    except OSError:
        click.echo(json.dumps(src.data, indent=2))


@cli.command()
@click.option("--smoke", is_flag=True, help="Build tiny models of every backend and run a two-stage cascade.")
@click.option("--device", default="auto", show_default=True,
              help="cpu, cuda, cuda:1 ... for --smoke (auto, like render: cuda when available, else cpu).")
@click.pass_context
def doctor(ctx, smoke, device):
    """Check the installation: libraries, codecs, devices, plugins."""
    from cinescale_post.cli.doctor import run_doctor

    ok = run_doctor(_host(ctx), smoke=smoke, device=device, echo=click.echo)
    if not ok:
        ctx.exit(1)


from cinescale_post.cli.conform_command import CONFORM_COMMANDS  # noqa: E402 - heavy imports only when it runs
from cinescale_post.cli.qc_commands import QC_COMMANDS  # noqa: E402 - qc imports cli helpers only when a command runs

for _command in QC_COMMANDS + CONFORM_COMMANDS:
    cli.add_command(_command)


def _add_plugin_commands(argv: list[str]) -> None:
    # Plugin commands load lazily from entry points; a failing plugin must not
    # break the CLI (or the other plugins' commands), and --no-plugins cannot
    # be known from click yet.
    if os.environ.get("CINESCALE_LOAD_PLUGINS", None) == "" or "--no-plugins" in argv:
        return
    try:
        from cinescale_post.pipeline.host import Host

        host = Host()
    except Exception as exc:  # noqa: BLE001
        log.warning("plugins could not be loaded for extra commands: %s", exc)
        return
    for impl in host.pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:  # noqa: BLE001
            log.warning("plugin %s failed to add commands: %s", impl.plugin_name, exc)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to the documented exit codes."""
    _add_plugin_commands(sys.argv[1:] if argv is None else list(argv))
    try:
        rv = cli.main(args=argv, prog_name="cinescale", standalone_mode=False)
    except CinescaleError as exc:
        if os.environ.get("CINESCALE_RAISE_ERRORS"):
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - the one place that maps crashes to exit 1
        if os.environ.get("CINESCALE_RAISE_ERRORS"):
            raise
        import traceback

        traceback.print_exc()
        click.echo(f"error: internal error ({type(exc).__name__}: {exc}); please report it", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


__all__ = ["cli", "main", "EXIT_CODES"]
