"""Well-known UIDs: transfer syntaxes (PS3.5 §10, Annex A) and the SOP classes our services accept."""

from __future__ import annotations

from typing import Final

from pydicom._uid_dict import UID_dictionary
from pydicom.uid import AllTransferSyntaxes

VERIFICATION: Final = "1.2.840.10008.1.1"

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"

# What an SCU proposes by default and an SCP always accepts (DCMTK proposes the same three).
UNCOMPRESSED_TRANSFER_SYNTAXES: Final = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)
_NATIVE: Final = frozenset((*UNCOMPRESSED_TRANSFER_SYNTAXES, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN))

# Every transfer syntax pydicom knows: native, deflated and every encapsulated (compressed) one.
ALL_TRANSFER_SYNTAXES: Final = tuple(dict.fromkeys([*UNCOMPRESSED_TRANSFER_SYNTAXES,
                                                    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
                                                    *(str(u) for u in AllTransferSyntaxes)]))


def is_uncompressed(transfer_syntax: str) -> bool:
    """Native pixel data (deflate compresses the whole data set, but losslessly and re-encodable)."""
    return transfer_syntax in _NATIVE


def _storage_classes() -> tuple[str, ...]:
    """Every Storage SOP class pydicom knows, retired ones included (old modalities still send them)."""
    out = []
    for uid, (name, kind, *_rest) in UID_dictionary.items():
        if kind != "SOP Class" or "Storage" not in name:
            continue
        if "Commitment" in name or "Storage Management" in name or uid == "1.2.840.10008.1.3.10":
            continue  # commitment/management are not storage; 1.3.10 is the DICOMDIR (Media Storage Directory)
        out.append(uid)
    return tuple(out)


STORAGE_SOP_CLASSES: Final = _storage_classes()


def uid_name(uid: str) -> str:
    entry = UID_dictionary.get(uid)
    return entry[0] if entry else uid
