"""Splitting a message into PDVs for sending (PS3.8 §9.3.5.1, Annex E; PS3.7 §6.3.1).

Slices are memoryviews of the encoded bytes: fragmenting never copies a payload. The UL packs
each PDV into its own P-DATA-TF PDU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from aiodicom.dimse.dataset import EncodedDataset
from aiodicom.dimse.messages import Message, encode_message
from aiodicom.ul.pdv import Pdv

# PS3.8 §9.3.5.1: a PDV item is a 4-byte Item-length, a 1-byte Presentation-context-ID and a
# 1-byte Message Control Header, then the fragment.
PDV_OVERHEAD: Final = 6

# Largest fragment sent when the peer sets no limit (Maximum Length 0, PS3.8 Annex D.1). The
# maximum is what the receiver can take, sending less is always allowed, and past a few hundred
# KiB the 6-byte PDV and 6-byte PDU headers cost nothing measurable, while every byte of a PDU
# is memory the receiver (and our sender) must hold at once. 1 MiB keeps both sides' buffers
# bounded and still moves a gigabit link with ~100 PDUs/s. Also used to cap huge finite maxima.
DEFAULT_FRAGMENT_CAP: Final = 1 << 20


def max_fragment_size(peer_max_pdu: int, *, cap: int = DEFAULT_FRAGMENT_CAP) -> int:
    """Bytes of data one PDV may carry for a peer that accepts `peer_max_pdu`.

    PS3.8 Annex D.1: the Maximum Length counts the variable field of a P-DATA-TF PDU (its PDV
    items), not the 6-byte PDU header; one PDV per PDU therefore carries max_pdu - 6 bytes. 0
    means no limit, and `cap` bounds the result either way.
    """
    if cap < 1:
        raise ValueError(f"fragment cap must be positive, got {cap}")
    if peer_max_pdu == 0:
        return cap
    if peer_max_pdu <= PDV_OVERHEAD:
        # No room for a single data byte: the UL should have refused this during negotiation.
        raise ValueError(f"maximum PDU length {peer_max_pdu} leaves no room for PDV data")
    return min(peer_max_pdu - PDV_OVERHEAD, cap)


def fragment(
    context_id: int, is_command: bool, data: bytes | bytearray | memoryview, max_size: int
) -> Iterator[Pdv]:
    """Cut `data` into PDVs of at most `max_size` bytes, the last one flagged.

    An empty payload still yields one (empty, last) PDV: PS3.8 Annex E.2 needs the last
    fragment to be flagged, so a message part is never sent as zero PDVs.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be positive, got {max_size}")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if mv.itemsize != 1 or mv.ndim != 1:
        mv = mv.cast("B")
    size = len(mv)
    if size <= max_size:
        yield Pdv(context_id=context_id, is_command=is_command, is_last=True, data=mv)
        return
    for start in range(0, size, max_size):
        end = start + max_size
        yield Pdv(context_id=context_id, is_command=is_command, is_last=end >= size, data=mv[start:end])


def command_pdvs(context_id: int, msg: Message, max_size: int) -> list[Pdv]:
    """The command set of `msg`, encoded and fragmented."""
    return list(fragment(context_id, True, encode_message(msg), max_size))


def dataset_pdvs(context_id: int, dataset: EncodedDataset, max_size: int) -> Iterator[Pdv]:
    """The data set PDVs of a message: memory is sliced, a file is read `max_size` at a time."""
    if max_size < 1:
        raise ValueError(f"max_size must be positive, got {max_size}")
    memory = dataset.memory
    if memory is not None:
        yield from fragment(context_id, False, memory, max_size)
        return
    remaining = dataset.size
    if remaining == 0:
        yield Pdv(context_id=context_id, is_command=False, is_last=True, data=b"")
        return
    for chunk in dataset.iter_chunks(max_size):
        remaining -= len(chunk)
        yield Pdv(context_id=context_id, is_command=False, is_last=remaining <= 0, data=chunk)
