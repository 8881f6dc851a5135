"""Where each decoded MPEG-4 Part 2 picture of an AVI belongs (issue 11 item 6).

AVI stores no presentation times: frame n is the n-th picture shown. With
B-frames (Xvid, DivX, packed or not) the decoder reorders, so "the k-th
picture out after a seek is frame key + k" holds only while no picture is
lost. A damaged anchor (I/P) makes the decoder drop the B-frames that need
it *silently* (no error): counting would then give every later frame its
successor's number.

So each packet is stamped with its chunk index before decoding (libavcodec
hands a packet's stamp on to the picture it codes, through reordering and
frame threads), and the picture's place is worked out from the decode
order of picture types, read from each packet's VOP header:

* a B-picture at chunk ``c`` is shown at ``c - 1`` (every earlier picture is
  shown before it except the anchor still held);
* an anchor at ``c`` is shown just before the next anchor's chunk (after the
  B-pictures between them), or at ``c`` in a low-delay stream (no B-frames);
* DivX packed B-frames: a chunk holding an anchor and a B-picture gives the
  B-picture to the next chunk (the not-coded placeholder the decoder uses
  to output it);
* a not-coded VOP on its own (``vop_coded = 0``, read with the VOL's
  ``vop_time_increment`` width: an Xvid/DivX drop frame) gives no picture:
  its frame shows the picture before it, and as a P-VOP it ends the run of
  the anchor before it. Empty chunks (VirtualDub drop frames) never reach
  the decoder (``FrameTable.drops``).

Lost pictures then leave gaps at their own numbers, which ``--on-bad-frame``
fills. Where a VOP header itself is unreadable the order around it is
unknown: :meth:`DecodeOrder.display` returns None and the reader refuses
(it never shifts numbers silently).
"""

from __future__ import annotations

from cinescale_post.contracts.errors import InputError

_VOP = b"\x00\x00\x01\xb6"
_B = 2  # vop_coding_type: 0 I, 1 P, 2 B, 3 S (sprite: an anchor)


class _Bits:
    def __init__(self, data: bytes):
        self.v, self.n, self.pos = int.from_bytes(data, "big"), 8 * len(data), 0

    def get(self, k: int) -> int:
        if self.pos + k > self.n:
            raise EOFError
        self.pos += k
        return self.v >> (self.n - self.pos) & ((1 << k) - 1)


def vol_time_bits(data: bytes) -> int | None:
    """Bits of ``vop_time_increment`` from the first VOL header in ``data``
    (ISO/IEC 14496-2 6.2.3: they follow from vop_time_increment_resolution),
    or None when there is no readable VOL."""
    for code in range(0x20, 0x30):
        i = data.find(b"\x00\x00\x01" + bytes([code]))
        if i < 0:
            continue
        b = _Bits(data[i + 4:i + 40])
        try:
            b.get(1 + 8)  # random_accessible_vol, video_object_type_indication
            verid = 1
            if b.get(1):  # is_object_layer_identifier
                verid = b.get(4)
                b.get(3)  # video_object_layer_priority
            if b.get(4) == 15:  # aspect_ratio_info: extended PAR
                b.get(16)
            if b.get(1):  # vol_control_parameters
                b.get(3)  # chroma_format, low_delay
                if b.get(1):  # vbv_parameters
                    b.get(79)
            shape = b.get(2)
            if shape == 3 and verid != 1:
                b.get(4)
            b.get(1)  # marker
            res = b.get(16)
        except EOFError:
            return None
        return max(1, (res - 1).bit_length()) if res else None
    return None


def _vop_header(head: bytes, time_bits: int | None) -> tuple[int, bool] | None:
    """(vop_coding_type, vop_coded) of a VOP header (the bytes after its start
    code), or None when the header does not hold together: after the type come
    modulo_time_base (ones ended by a zero) and a marker bit that is always
    one, so a zeroed or cut header is not taken for an I-picture. Without the
    VOL's time bits, vop_coded is taken as 1."""
    if len(head) < 2:
        return None
    b = _Bits(head)
    kind = b.get(2)
    try:
        while b.get(1):  # modulo_time_base
            pass
        if not b.get(1):  # marker
            return None
    except EOFError:
        return None
    if time_bits is None:
        return kind, True
    try:
        b.get(time_bits)
        if not b.get(1):  # marker after vop_time_increment
            return None
        return kind, bool(b.get(1))
    except EOFError:
        return kind, True


def vop_types(data: bytes, time_bits: int | None = None) -> list[tuple[int, bool] | None]:
    """(vop_coding_type, vop_coded) of every VOP in a packet (decode order;
    None: unreadable)."""
    out, i = [], data.find(_VOP)
    while i >= 0:
        out.append(_vop_header(data[i + 4:i + 16], time_bits))
        i = data.find(_VOP, i + 4)
    return out


class DecodeOrder:
    """Picture kinds by chunk stamp, learnt as packets pass to the decoder."""

    def __init__(self, drops=frozenset(), header: bytes = b""):
        self.kinds: dict[int, str | None] = {}  # stamp -> "A" anchor, "B", None unreadable
        self.drops = frozenset(drops)  # stamps of AVI drop frames (empty chunks: no packet)
        self.time_bits: int | None = vol_time_bits(header)  # of vop_time_increment, from the VOL
        self._packed_b: int | None = None  # stamp of a placeholder chunk that outputs a packed B
        self.ended = False

    def reset(self) -> None:
        """After a seek: the decoder starts afresh (the kinds stay true)."""
        self._packed_b = None
        self.ended = False

    def see(self, stamp: int, data: bytes) -> None:
        if self.time_bits is None:
            self.time_bits = vol_time_bits(data)
        if stamp == self._packed_b:
            self._packed_b = None
            return  # the packed B-picture's own chunk: its kind is set
        types = vop_types(data, self.time_bits)
        if not types or types[0] is None:
            self.kinds[stamp] = None
            return
        (first, coded) = types[0]
        if not coded and len(types) == 1:
            self.kinds[stamp] = "N"  # a not-coded VOP (a drop frame): no picture, the one before is shown
            return
        self.kinds[stamp] = "B" if first == _B else "A"
        if len(types) > 1 and first != _B and types[1] is not None and types[1][0] == _B:
            self.kinds[stamp + 1] = "B"
            self._packed_b = stamp + 1

    def not_coded(self, stamp: int) -> bool:
        """The chunk at ``stamp`` is a not-coded VOP: it shows the picture before it."""
        return self.kinds.get(stamp) == "N"

    def display(self, stamp: int, low_delay: bool, is_b: bool) -> int | None:
        """Chunk-count position of the picture decoded from ``stamp`` (``is_b``:
        what the decoder says it is); None when the kinds around it are
        unknown (an unreadable header) or the header and decoder disagree."""
        if low_delay:  # no B-frames: nothing is reordered, whatever a damaged header says
            return stamp
        kind = self.kinds.get(stamp)
        if kind is None or (kind == "B") != is_b:
            return None
        if kind == "B":
            return stamp - 1
        t = stamp + 1
        while t in self.kinds or t in self.drops:
            if t in self.drops:  # an empty chunk: never reaches the decoder
                t += 1
                continue
            if self.kinds[t] is None:
                return None
            if self.kinds[t] in ("A", "N"):  # a not-coded VOP is a P-VOP in decode order
                return t - 1
            t += 1
        return t - 1 if self.ended else None  # the last anchor: after the trailing B-pictures


def unplaceable(path: str, first_frame: int, frames: int, stamp: int) -> InputError:
    """The error for a picture whose place the decode order cannot tell (a VOP
    header near it is damaged): refused rather than given a guessed number."""
    lo = first_frame + max(0, stamp - 2)
    hi = first_frame + min(frames - 1, stamp + 2)
    return InputError(f"{path}: frames {lo}-{hi} cannot be placed: a damaged MPEG-4 picture header there "
                      "hides which picture the decoder gives for which frame (B-frames reorder them)",
                      fix="re-export the clip from its original, or copy it again (--on-bad-frame hold/black "
                          "cannot help here: they fill frames whose place is known, and this one is not)")
