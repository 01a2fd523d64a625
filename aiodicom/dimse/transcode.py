"""Transfer syntax fallback: send as received when the peer accepted that syntax, else convert.

Between the native syntaxes (Implicit/Explicit VR Little Endian, Explicit VR Big Endian, Deflated)
conversion is always possible (pydicom decodes and re-encodes). A compressed data set becomes a native
one only with a decoder (the `convert` extra: pylibjpeg with its libjpeg and openjpeg plugins); native
pixel data is compressed only into lossless syntaxes pydicom has an encoder for: no lossy copy is ever
made. When nothing works `CannotConvert` says why (the router dead-letters the instance with it, a C-MOVE
or C-GET counts a failed sub-operation and logs it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from ..uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    uid_name,
)
from .dataset import EncodedDataset

NATIVE: Final = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
                 EXPLICIT_VR_BIG_ENDIAN)
RLE_LOSSLESS: Final = "1.2.840.10008.1.2.5"
JPEG_LS_LOSSLESS: Final = "1.2.840.10008.1.2.4.80"
JPEG_2000_LOSSLESS: Final = "1.2.840.10008.1.2.4.90"
# PS3.5 §8.2: lossless compressed syntaxes we may produce when pydicom has an encoder for them.
LOSSLESS_TARGETS: Final = (RLE_LOSSLESS, JPEG_2000_LOSSLESS, JPEG_LS_LOSSLESS)
EXTRA_HINT: Final = "install the convert extra: pip install 'aiodicom[convert]'"


class CannotConvert(Exception):
    """No syntax the destination accepted can be produced from this instance: a permanent failure."""


def _decoder_available(ts: str) -> bool:
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(ts).is_available)
    except (ImportError, NotImplementedError, ValueError):
        return False


def _encoder_available(ts: str) -> bool:
    try:
        from pydicom.pixels import get_encoder

        return bool(get_encoder(ts).is_available)
    except (ImportError, NotImplementedError, ValueError):
        return False


def why_not(source: str, target: str) -> str | None:
    """None when `source` can be converted to `target`, else the reason in words."""
    if source == target:
        return None
    if source in NATIVE and target in NATIVE:
        return None
    if target not in NATIVE and target not in LOSSLESS_TARGETS:
        return f"aiodicom does not produce {uid_name(target)} (only native and lossless syntaxes)"
    if source not in NATIVE and not _decoder_available(source):
        return f"no decoder for {uid_name(source)} is installed ({EXTRA_HINT})"
    if target in LOSSLESS_TARGETS and not _encoder_available(target):
        return f"no encoder for {uid_name(target)} is installed"
    return None


def choose_syntax(source: str, accepted: Sequence[str], preferred: Sequence[str] = ()) -> str:
    """The syntax to send in: the instance's own when accepted (and allowed), else the first accepted one it
    can be converted to, in the destination's order of preference, or native before compressed.
    CannotConvert when there is none."""
    allowed = [ts for ts in accepted if not preferred or ts in preferred]
    if source in allowed:
        return source
    if preferred:
        order = sorted(allowed, key=preferred.index)
    else:  # keep it lossless and cheap: native syntaxes first, Explicit VR Little Endian first of them
        order = sorted(dict.fromkeys(allowed), key=lambda ts: NATIVE.index(ts) if ts in NATIVE else len(NATIVE))
    reasons = []
    for target in order:
        reason = why_not(source, target)
        if reason is None:
            return target
        reasons.append(reason)
    offered = ", ".join(uid_name(ts) for ts in dict.fromkeys(accepted)) or "nothing"
    detail = "; ".join(dict.fromkeys(reasons)) or "none of them is allowed by the destination's transfer_syntaxes"
    raise CannotConvert(f"cannot send {uid_name(source)}: the destination accepted {offered}; {detail}")


def convert(encoded: EncodedDataset, target: str) -> EncodedDataset:
    """Re-encode a data set in `target` (blocking, CPU-bound: call from a worker thread). Keeps every UID:
    the converted instance is the same instance (PS3.5 §8.2.1 leaves lossless conversion UID-neutral)."""
    reason = why_not(encoded.transfer_syntax, target)
    if reason is not None:
        raise CannotConvert(reason)
    ds = encoded.dataset()
    try:
        if encoded.transfer_syntax not in NATIVE and "PixelData" in ds:
            ds.decompress(generate_instance_uid=False)
        if target not in NATIVE:
            ds.compress(target, generate_instance_uid=False)
        return EncodedDataset.from_dataset(ds, target)
    except CannotConvert:
        raise
    except Exception as exc:  # pydicom and its plugins raise many types on pixel data they cannot handle
        raise CannotConvert(f"converting {uid_name(encoded.transfer_syntax)} to {uid_name(target)} failed: "
                            f"{exc}") from exc


def accepted_syntaxes(contexts: Iterable[tuple[int, tuple[str, str]]], sop_class: str) -> list[str]:
    """The syntaxes a destination accepted for a SOP class, in context order (IDs ascend as proposed)."""
    return list(dict.fromkeys(ts for _, (abstract, ts) in contexts if abstract == sop_class))
