"""``cinescale doctor``: is this install (or this GPU node) able to render?"""

from __future__ import annotations

import importlib
import time

from cinescale_post.orchestrator.third_party_output import routed


def _version(mod: str) -> str | None:
    try:
        m = importlib.import_module(mod)
    except Exception:  # noqa: BLE001 - report any import failure
        return None
    return getattr(m, "__version__", None) or getattr(m, "version", None) or "installed"


def _auto_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def run_doctor(host, *, smoke: bool, device: str = "auto", echo) -> bool:
    ok = True
    echo("libraries:")
    for label, mod in [("av (PyAV)", "av"), ("OpenEXR", "OpenEXR"), ("OpenColorIO", "PyOpenColorIO"),
                       ("numpy", "numpy"), ("opencv", "cv2"), ("fileseq", "fileseq"), ("torch", "torch"),
                       ("diffusers", "diffusers"), ("transformers", "transformers")]:
        v = _version(mod)
        echo(f"  {label:<14} {v or 'MISSING'}")
        ok &= v is not None or mod in ("diffusers", "transformers", "torch")
    try:
        import av

        echo(f"  ffmpeg (in av)  {av.ffmpeg_version_info}")
        need = ["prores_ks", "dnxhd", "libx264", "libx265", "prores"]
        have = av.codecs_available
        missing = [c for c in need if c not in have]
        echo(f"  codecs          {'all present' if not missing else 'MISSING ' + ', '.join(missing)}")
        ok &= not missing
    except Exception as exc:  # noqa: BLE001
        echo(f"  av: {exc}")
        ok = False
    try:
        import torch

        cuda = torch.cuda.is_available()
        echo(f"devices: cpu{', cuda x' + str(torch.cuda.device_count()) if cuda else ' (no CUDA device)'}")
        if cuda:
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                echo(f"  cuda:{i} {torch.cuda.get_device_name(i)}, {free / 2**30:.1f}/{total / 2**30:.1f} GiB free")
    except ImportError:
        echo("devices: torch missing, diffusion backends unavailable")
    echo("plugins:")
    for r in host.describe():
        state = "FAILED " + r["error"] if r["error"] else "ok"
        echo(f"  {r['name']:<20} {r['version'] or '-':<10} {state}")
        ok &= r["error"] is None
    if smoke:
        if device == "auto":  # as render resolves it: the GPU when there is one
            device = _auto_device()
        echo(f"smoke test on {device} (tiny random-weight models: proves wiring and arithmetic, not pictures):")
        ran = 0
        for bid, backend in sorted(host.backends().items()):
            t0 = time.monotonic()
            try:
                with routed():  # library bars and warnings go to our log (-v), not between our lines
                    result = host.backend(bid).smoke(device)
                if result is None:
                    continue
                echo(f"  {bid:<20} ok in {time.monotonic() - t0:.1f}s {result}")
                ran += 1
            except Exception as exc:  # noqa: BLE001
                echo(f"  {bid:<20} FAILED {type(exc).__name__}: {exc}")
                ok = False
        if not ran:
            echo("  no installed backend offers a smoke test (only the draft backend is installed?)")
    echo("result: " + ("OK" if ok else "PROBLEMS FOUND"))
    return ok
