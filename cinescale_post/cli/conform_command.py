"""Click command ``conform`` for the ``cinescale`` CLI (``editorial.conform`` does the work)."""

from __future__ import annotations

import json
from fractions import Fraction

import click

from cinescale_post.cli.context import PROGRESS_MODES, command_host as _host


def _rate(text: str | None) -> Fraction | None:
    if text is None:
        return None
    try:
        return Fraction(text).limit_denominator(1001)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{text!r} is not a frame rate (24, 25, 24000/1001, 23.976)",
                                 param_hint="--rate") from None


@click.command()
@click.argument("cut")
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR",
              help="Folder for the renders and the relinked cut (<cut>.conformed.<ext> and .otio).")
@click.option("-p", "--preset", default="uhd-draft", show_default=True,
              help="Preset for every shot (a clip's metadata or 'cinescale' marker may name its own).")
@click.option("--handles", type=int, default=0, show_default=True,
              help="Frames rendered beyond each clip's range on either side (clamped to the media).")
@click.option("--search-path", "search_paths", multiple=True, metavar="DIR",
              help="Where to find media the cut names by reel or file name (EDLs); repeatable.")
@click.option("--rate", help="Frame rate of an EDL (CMX 3600 stores none), e.g. 24000/1001. Default 24.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a preset key for every shot.")
@click.option("--model", help="Local weights: a diffusers folder or a .safetensors file.")
@click.option("--seed", type=int, help="Seed (a clip's settings may name its own).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the preset's).")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: the shots one after another in this process; ray: the shots in parallel on a Ray "
                   "cluster (RAY_ADDRESS, else a local one), each worker loading the model once.")
@click.option("--dry-run", is_flag=True, help="List per shot the frames, merged range, cuts and estimate (JSON); "
                                              "render nothing.")
@click.option("--gpu", metavar="CARD", help="With --dry-run: estimate for h100, h200, a100, a800, 4090 or GiB.")
@click.option("--overwrite", is_flag=True, help="Replace renders made with other settings.")
@click.option("--progress", type=click.Choice(PROGRESS_MODES), default="auto", show_default=True,
              help="One bar over all shots; json: JSON lines carrying the shot's name.")
@click.pass_context
def conform(ctx, cut, out_dir, preset, handles, search_paths, rate, overrides, model, seed, device, executor,
            dry_run, gpu, overwrite, progress):
    """Render the source frames an editor's CUT uses (.otio, .edl, FCP 7 .xml,
    .fcpxml, .aaf) and write the cut again pointing at the renders. Running it
    again renders only what is missing."""
    from cinescale_post.editorial.conform import conform as run_conform
    from cinescale_post.orchestrator.progress import make_sink

    if handles < 0:
        raise click.BadParameter("must be >= 0", param_hint="--handles")
    card = None
    if gpu:
        if not dry_run:
            raise click.UsageError("--gpu describes a plan: use it with --dry-run")
        from cinescale_post.simulate.cards import card as card_of

        try:
            card = card_of(gpu)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--gpu") from None
    sink = make_sink("none" if dry_run else progress)
    ctx.obj["sink"] = sink
    report = run_conform(cut, out_dir, preset=preset, host=_host(ctx), handles=handles, search_paths=search_paths,
                         rate=_rate(rate), overrides=overrides, model=model, seed=seed, device=device,
                         executor=executor, overwrite=overwrite, sink=sink, dry_run=dry_run, card=card)
    if dry_run:
        click.echo(json.dumps(report, indent=2, default=str))
    elif progress in ("auto", "bar"):
        shots = report["shots"]
        click.echo(f"conformed {len(shots)} shot(s), {sum(s['frame_count'] for s in shots)} frames: "
                   + ", ".join(report["timelines"]), err=True)


CONFORM_COMMANDS = (conform,)
