"""Joining a movie render's chunk files into the final master."""

from __future__ import annotations

import logging
import os

from cinescale_post.contracts.errors import OutputError
from cinescale_post.orchestrator.manifest import Manifest, file_sha1
from cinescale_post.orchestrator.resume import remove_chunks

log = logging.getLogger(__name__)


def assemble_range(manifest: Manifest, source, frames, out_path: str) -> str:
    """Join the chunk movies of the contiguous ``frames`` (a conform shot) into
    ``out_path``: video only (packet copy cannot trim audio to a range sample-
    accurately; the relinked timeline keeps the source's audio), its timecode
    the source's at its first frame. The chunks stay (a rerun finds them)."""
    from cinescale_post.media.assemble import concat_movies

    idx = {n: i for i, n in enumerate(source.frame_numbers)}
    wanted = sorted(frames)
    units = sorted((u for u in manifest.verified_units().values() if u.first in idx and u.last in idx
                    and wanted[0] <= u.first and u.last <= wanted[-1]), key=lambda u: u.first)
    covered = [n for u in units for n in source.frame_numbers[idx[u.first]: idx[u.last] + 1]]
    if covered != wanted:
        raise OutputError(f"cannot assemble {out_path}: the chunks of frames {wanted[0]}-{wanted[-1]} are "
                          "incomplete", fix="run the same command again (it renders what is missing)")
    return concat_movies([str(manifest.root / u.file) for u in units], out_path, source=source, audio=False,
                         timecode_offset_frames=idx[wanted[0]])


def assemble_movie(manifest: Manifest, source, out_path: str, *, audio: bool | str = True) -> str:
    """Join the logged chunk movies covering every source frame into
    ``out_path`` (packet copy, audio and timecode from the source)."""
    from cinescale_post.media.assemble import concat_movies
    from cinescale_post.media.sequence import compress_ranges

    units = sorted(manifest.verified_units().values(), key=lambda u: u.first)
    idx = {n: i for i, n in enumerate(source.frame_numbers)}
    covered: list[int] = []
    paths = []
    for u in units:
        if u.first not in idx or u.last not in idx:
            continue
        frames = source.frame_numbers[idx[u.first]: idx[u.last] + 1]
        if set(frames) & set(covered):
            raise OutputError(f"chunks in {manifest.work} overlap at frames {u.id}",
                              fix="render again with --overwrite")
        covered.extend(frames)
        paths.append(str(manifest.root / u.file))
    missing = sorted(set(source.frame_numbers) - set(covered))
    if missing:
        raise OutputError(f"cannot assemble {out_path}: frames {compress_ranges(missing)} are not rendered yet",
                          fix=f"render them first (cinescale render ... --frames {compress_ranges(missing)})")
    final = concat_movies(paths, out_path, source=source, audio=audio)
    st = os.stat(final)
    manifest.update(assembled={"file": os.path.relpath(final, manifest.root), "size": st.st_size,
                               "mtime_ns": st.st_mtime_ns, "sha1": file_sha1(final)})
    remove_chunks(manifest)
    from cinescale_post.orchestrator.journal_fold import fold

    try:
        fold(manifest)  # every frame is in the master: the unit logs go into the manifest, the work folder away
    except OSError as exc:  # the master is there; a folder left untidy is no failure
        log.warning("assembled %s; its work folder %s is kept (%s)", final, manifest.work, exc)
    return final
