"""The render manifest and the per-unit logs that make resume safe.

Layout for an output ``out/sh010.mov`` (or ``out/sh010.####.exr``)::

    out/sh010.mov.manifest.json        plan, versions, input identity, weights, summary
    out/sh010.mov.cinescale/           work folder (while the render is unfinished)
        chunks/sh010.1001-1048.mov     per-chunk movies (movie outputs only)
        units-<host>-<pid>.<id>.jsonl  one line per published unit (frame file or chunk)

Why logs per process: farm tasks of one shot run at the same time on
different machines; each appends only to its own file, so no update is ever
lost, and a line cut short by a crash is simply ignored. A log ends with a
``closed`` line when its writer is done with it. The manifest JSON is
rewritten atomically (temporary name + rename) under a lock file next to it
(``.<name>.lock``: farm tasks share it); a finished render folds the closed
logs into it (``journal``, see ``journal_fold.py``) and removes the work
folder. Readers see folded records and live logs alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from cinescale_post import __version__
from cinescale_post.contracts.errors import OutputError
from cinescale_post.media.sequence import parse_pattern

MANIFEST_VERSION = 1
#: the manifest key holding the folded unit logs of a finished render
JOURNAL_KEY = "journal"
#: a lock older than this is from a killed process (a manifest write takes milliseconds)
LOCK_STALE_S = 60.0
LOCK_WAIT_S = 30.0
_JOURNAL_NAME = re.compile(r"^units-(?P<host>.+)-(?P<pid>\d+)(?:\.[0-9a-f]+)?\.jsonl$")

log = logging.getLogger(__name__)


def output_base(output_path: str) -> Path:
    """``out/sh010.%04d.exr`` -> ``out/sh010``; ``out/a.mov`` -> ``out/a.mov``."""
    pat = parse_pattern(output_path)
    if pat is None:
        return Path(output_path)
    head = pat.head.rstrip("._-") or "frames"
    return Path(pat.directory or ".") / head


def manifest_path(output_path: str) -> Path:
    return Path(f"{output_base(output_path)}.manifest.json")


def work_dir(output_path: str) -> Path:
    return Path(f"{output_base(output_path)}.cinescale")


def read_manifest_file(path: str) -> tuple[str, dict]:
    """A ``<output>.manifest.json`` given on the command line: the output it
    describes, as it lies next to it (a render moved or mounted elsewhere
    still resolves; printf form, ``spelling.recorded`` gives the user's),
    and the manifest's data."""
    from cinescale_post.contracts.errors import InputError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        recorded = data["plan"]["output"]["path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a cinescale manifest ({exc})",
                         fix="pass the <output>.manifest.json written by `cinescale render`") from exc
    output = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.basename(recorded))
    return output, data


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}",
                          fix="check free space and permissions of the output folder") from exc


def file_sha1(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def input_identity(source) -> dict:
    """Cheap identity of the input: size + mtime per file (movies), or a hash
    over the sequence's file names, sizes and mtimes."""
    ident = {"path": os.path.abspath(source.path), "kind": source.kind,
             "frames": source.frame_count}
    if source.kind == "sequence":
        pat = parse_pattern(source.path)
        h = hashlib.sha1()
        for n in source.frame_numbers:
            try:
                st = os.stat(pat.path(n))
                h.update(f"{n}:{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                h.update(f"{n}:missing;".encode())
        ident["files_sha1"] = h.hexdigest()
    else:
        st = os.stat(source.path)
        ident.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    return ident


@dataclass
class Unit:
    """A published output file: one frame (sequences) or one chunk (movies)."""

    id: str
    first: int
    last: int
    file: str  # relative to the manifest's folder
    size: int
    mtime_ns: int
    sha1: str
    seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Manifest:
    """Reads and writes the manifest and the unit logs of one output."""

    def __init__(self, output_path: str, *, read_only: bool = False):
        #: read_only: a non-main rank under torchrun reads state, never writes it.
        self.read_only = read_only
        self.output_path = output_path
        self.path = manifest_path(output_path)
        self.work = work_dir(output_path)
        self.root = self.path.parent
        self._log = None
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")

    # ---------------------------------------------------------------- header

    def read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise OutputError(f"manifest {self.path} is unreadable ({exc})",
                              fix="delete it and render again with --overwrite") from exc

    def write_header(self, plan, *, plugins: dict, input_ident: dict | None, weights: dict,
                     extra: dict | None = None) -> None:
        if self.read_only:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        data = {
            "manifest_version": MANIFEST_VERSION,
            "tool": {"cinescale-post": __version__, "plugins": plugins},
            "plan_digest": plan.digest(),
            "plan": plan.to_dict(),
            "input": input_ident,
            "weights": weights,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if extra:
            data.update(extra)
        with self.locked():  # a new render (or --overwrite): folded records of the old one are dropped
            atomic_write_text(self.path, json.dumps(data, indent=2))

    def update(self, **fields) -> None:
        if self.read_only:
            return
        with self.locked():  # read-modify-write: another task's fields (and a fold) are never lost
            data = self.read() or {}
            data.update(fields)
            atomic_write_text(self.path, json.dumps(data, indent=2))

    @contextlib.contextmanager
    def locked(self, *, wait_s: float = LOCK_WAIT_S, required: bool = False):
        """Hold the manifest's lock file (O_EXCL create: works on NFS); yields
        True when held. A lock of a dead process on this host, or older than
        LOCK_STALE_S, is broken. After ``wait_s`` it yields False (or raises
        OutputError when ``required``): a stuck lock must not stop a render."""
        held = self._acquire(wait_s)
        if not held and required:
            raise OutputError(f"manifest {self.path} is locked by another process ({self._lock_path})",
                              fix=f"delete {self._lock_path} if no render of this output is running")
        if not held:
            log.warning("manifest %s: lock %s not free after %.0f s; writing without it", self.path,
                        self._lock_path, wait_s)
        try:
            yield held
        finally:
            if held:
                self._lock_path.unlink(missing_ok=True)

    def _acquire(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        me = f"{socket.gethostname()} {os.getpid()}"
        while True:
            try:
                fd = os.open(self._lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._lock_is_stale():
                    self._lock_path.unlink(missing_ok=True)
                    continue
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
                continue
            except OSError as exc:
                raise OutputError(f"cannot create {self._lock_path}: {exc.strerror or exc}",
                                  fix="check free space and permissions of the output folder") from exc
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            return True

    def _lock_is_stale(self) -> bool:
        try:
            st = self._lock_path.stat()
            owner = self._lock_path.read_text(encoding="utf-8").split()
        except (OSError, ValueError):
            return False  # just released (or being written): try again
        if time.time() - st.st_mtime > LOCK_STALE_S:
            return True
        if len(owner) == 2 and owner[0] == socket.gethostname() and owner[1].isdigit():
            return not pid_alive(int(owner[1]))
        return False

    # ---------------------------------------------------------------- units

    def log_unit(self, unit: Unit) -> None:
        if self.read_only:
            return
        self._append(unit.to_dict())

    def _append(self, record: dict) -> None:
        if self._log is None:
            self.work.mkdir(parents=True, exist_ok=True)
            # one file per opening: a log that ends "closed" is never written again (a fold may remove it)
            name = f"units-{socket.gethostname()}-{os.getpid()}.{secrets.token_hex(4)}.jsonl"
            self._log = open(self.work / name, "x", encoding="utf-8")
        self._log.write(json.dumps(record) + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())

    def log_substitutions(self, subs: dict[int, str]) -> None:
        """Record frames a reader substituted (``--on-bad-frame``/``--missing``)
        in this process's unit log; :meth:`units` skips these lines."""
        if self.read_only or not subs:
            return
        self._append({"substituted": {str(k): v for k, v in subs.items()}})

    def substitutions(self) -> dict[str, str]:
        """Every substituted frame logged by any process: plate number -> how."""
        found: dict[str, str] = dict(self.folded().get("substituted") or {})
        for _, records in self.journals():
            for rec in records:
                if isinstance(rec.get("substituted"), dict):
                    found.update(rec["substituted"])
        return dict(sorted(found.items(), key=lambda kv: int(kv[0])))

    def folded(self) -> dict:
        """What a fold moved into the manifest (``journal``): units, substituted."""
        try:
            data = self.read() or {}
        except OutputError:
            return {}
        got = data.get(JOURNAL_KEY)
        return got if isinstance(got, dict) else {}

    def journals(self) -> list[tuple[Path, list[dict]]]:
        """Every unit log in the work folder with its records (a line cut
        short by a crash is left out), sorted by name."""
        out = []
        if not self.work.is_dir():
            return out
        for path in sorted(self.work.glob("units-*.jsonl")):
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue  # folded away by the task that finished the render
            records = []
            for line in text.splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
            out.append((path, records))
        return out

    def units(self) -> dict[str, Unit]:
        """Every logged unit (the last record of an id wins)."""
        return {uid: records[-1] for uid, records in self.unit_records().items()}

    def unit_records(self) -> dict[str, list[Unit]]:
        """Every record of every unit id, in log order. Two farm tasks may
        both publish a frame they share (identical bytes, each renamed into
        place): only the record of the last rename matches the file."""
        found: dict[str, list[Unit]] = {}
        # folded records first: they are older than anything a log holds now
        records = list(self.folded().get("units") or [])
        for _, recs in self.journals():
            records.extend(recs)
        for rec in records:
            try:
                found_unit = Unit(**rec)
            except TypeError:
                continue  # a substitution or "closed" line
            found.setdefault(found_unit.id, []).append(found_unit)
        return found

    def verified_units(self, *, full: bool = False) -> dict[str, Unit]:
        """Units whose file is still there unchanged (size + mtime; and sha1
        when ``full``): the latest record that matches the file."""
        ok = {}
        for uid, records in self.unit_records().items():
            for u in reversed(records):
                p = self.root / u.file
                try:
                    st = p.stat()
                except OSError:
                    break
                if st.st_size != u.size or st.st_mtime_ns != u.mtime_ns:
                    continue
                if full and file_sha1(p) != u.sha1:
                    continue
                ok[uid] = u
                break
        return ok

    def make_unit(self, uid: str, first: int, last: int, path: str, seconds: float) -> Unit | None:
        if self.read_only:
            return None
        st = os.stat(path)
        return Unit(uid, first, last, os.path.relpath(path, self.root), st.st_size, st.st_mtime_ns,
                    file_sha1(path), round(seconds, 4))

    def clear(self) -> None:
        """Forget every unit (``--overwrite``); published files stay until
        replaced. Folded records go with the header ``write_header`` rewrites."""
        if self.work.is_dir():
            for journal in self.work.glob("units-*.jsonl"):
                journal.unlink(missing_ok=True)

    def close(self) -> None:
        """End this process's log with a ``closed`` line: nothing writes to
        it again, so the task that finishes the render may fold it."""
        if self._log is not None:
            try:
                self._log.write(json.dumps({"closed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
                self._log.flush()
                os.fsync(self._log.fileno())
            except OSError as exc:  # the log stays open-ended: kept, never folded
                log.warning("could not close unit log %s: %s", self._log.name, exc)
            finally:
                self._log.close()
                self._log = None


def journal_writer(path: Path) -> tuple[str, int] | None:
    """(host, pid) of a unit log's name (None: not one of ours)."""
    m = _JOURNAL_NAME.match(path.name)
    return (m.group("host"), int(m.group("pid"))) if m else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
