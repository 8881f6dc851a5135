"""Built-in readers: movies through PyAV, image sequences and single images.

Registered through the same ``register_readers`` hook as third-party
readers. ``accepts`` only looks at the path (cheap, no decoding); the
decoding modules are imported when a file is actually opened.
"""

from __future__ import annotations

import os

from cinescale_post import hookimpl
from cinescale_post.contracts.media import ReaderFactory
from cinescale_post.media.sequence import IMAGE_SUFFIXES, parse_pattern

# Suffixes the movie reader claims outright. Any other existing file that is
# neither an image nor a pattern is also offered to FFmpeg, so that a
# mislabelled clip still opens and a non-media file gets a clear error.
MOVIE_SUFFIXES = (
    ".mov", ".mp4", ".m4v", ".mkv", ".webm", ".mxf", ".avi", ".mts", ".m2ts", ".ts",
    ".mpg", ".mpeg", ".y4m", ".dv", ".nut", ".ogv", ".flv", ".wmv", ".3gp", ".gif",
)


def accepts_movie(path: str) -> bool:
    if parse_pattern(path) is not None:
        return False
    suffix = os.path.splitext(path)[1].lower()
    if suffix in MOVIE_SUFFIXES:
        return True
    return suffix not in IMAGE_SUFFIXES and os.path.isfile(path)


def accepts_sequence(path: str) -> bool:
    pattern = parse_pattern(path)
    if pattern is not None:
        return pattern.suffix in IMAGE_SUFFIXES
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def open_movie(path: str, first_frame: int = 1001):
    return open_movie_planned(path, first_frame, None, None)


def open_sequence(path: str, first_frame: int = 1001):
    from cinescale_post.media.sequence_reader import SequenceReader

    return SequenceReader(path, first_frame=first_frame)


def open_movie_planned(path: str, first_frame: int, policy, planned):
    """The movie, through FFmpeg's deinterlacer or inverse telecine where its
    fields ask for it (``media.field_reader``; the plan records the choice)."""
    from cinescale_post.media.field_reader import open_fields
    from cinescale_post.media.movie_reader import MovieReader

    movie = MovieReader(path, first_frame=first_frame, policy=policy, planned=planned)
    try:
        return open_fields(movie, planned)
    except BaseException:
        movie.close()
        raise


def open_sequence_planned(path: str, first_frame: int, policy, planned):
    from cinescale_post.media.sequence_reader import SequenceReader

    return SequenceReader(path, first_frame=first_frame, policy=policy)


MOVIE = ReaderFactory(name="pyav-movie", kind="movie", accepts=accepts_movie, open=open_movie,
                      open_planned=open_movie_planned)
SEQUENCE = ReaderFactory(name="image-sequence", kind="sequence", accepts=accepts_sequence, open=open_sequence,
                         open_planned=open_sequence_planned)


@hookimpl
def register_readers(register):
    register(MOVIE)
    register(SEQUENCE)
