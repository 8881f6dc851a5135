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
  to output it).

Lost pictures then leave gaps at their own numbers, which ``--on-bad-frame``
fills. Where a VOP header itself is unreadable the order around it is
unknown: :meth:`DecodeOrder.display` returns None and the reader refuses
(it never shifts numbers silently).
"""

from __future__ import annotations

_VOP = b"\x00\x00\x01\xb6"
_B = 2  # vop_coding_type: 0 I, 1 P, 2 B, 3 S (sprite: an anchor)


def _vop_type(head: bytes) -> int | None:
    """vop_coding_type of a VOP header (the bytes after its start code), or
    None when the header does not hold together: after the type come
    modulo_time_base (ones ended by a zero) and a marker bit that is always
    one, so a zeroed or cut header is not taken for an I-picture."""
    if len(head) < 2:
        return None
    bits = int.from_bytes(head[:8], "big")
    width = 8 * len(head[:8])
    pos = 2
    while pos < width and bits >> (width - 1 - pos) & 1:
        pos += 1
    pos += 1  # the zero ending modulo_time_base
    if pos >= width or not bits >> (width - 1 - pos) & 1:
        return None
    return head[0] >> 6


def vop_types(data: bytes) -> list[int | None]:
    """vop_coding_type of every VOP in a packet (decode order; None: unreadable)."""
    out, i = [], data.find(_VOP)
    while i >= 0:
        out.append(_vop_type(data[i + 4:i + 12]))
        i = data.find(_VOP, i + 4)
    return out


class DecodeOrder:
    """Picture kinds by chunk stamp, learnt as packets pass to the decoder."""

    def __init__(self):
        self.kinds: dict[int, str | None] = {}  # stamp -> "A" anchor, "B", None unreadable
        self._packed_b: int | None = None  # stamp of a placeholder chunk that outputs a packed B
        self.ended = False

    def reset(self) -> None:
        """After a seek: the decoder starts afresh (the kinds stay true)."""
        self._packed_b = None
        self.ended = False

    def see(self, stamp: int, data: bytes) -> None:
        if stamp == self._packed_b:
            self._packed_b = None
            return  # the packed B-picture's own chunk: its kind is set
        types = vop_types(data)
        if not types or types[0] is None:
            self.kinds[stamp] = None
            return
        self.kinds[stamp] = "B" if types[0] == _B else "A"
        if len(types) > 1 and types[0] != _B and types[1] == _B:
            self.kinds[stamp + 1] = "B"
            self._packed_b = stamp + 1

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
        while t in self.kinds:
            if self.kinds[t] is None:
                return None
            if self.kinds[t] == "A":
                return t - 1
            t += 1
        return t - 1 if self.ended else None  # the last anchor: after the trailing B-pictures
