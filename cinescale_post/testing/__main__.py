"""``python -m cinescale_post.testing sample OUT.mov`` (scripts/demo.sh): the demo clip."""

from fractions import Fraction

from cinescale_post.testing.clips import make_clip


def main(argv: list[str] | None = None) -> None:
    """``python -m cinescale_post.testing sample OUT.mov``: the demo clip
    (1 s, 960x540, 23.976 fps ProRes 422 HQ, 24-bit PCM audio, timecode
    01:00:00:00)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "sample":
        raise SystemExit("usage: python -m cinescale_post.testing sample OUT.mov")
    out = make_clip(args[1], frames=24, size=(960, 540), rate=Fraction(24000, 1001), codec="prores_ks",
                    profile="hq", audio="pcm_s24le", timecode="01:00:00:00", content="gradient")
    print(f"sample clip: {out}")


main()
