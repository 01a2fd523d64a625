"""Well-known UIDs: transfer syntaxes (PS3.5 §10, Annex A) and the SOP classes our services accept."""

from __future__ import annotations

import functools
from typing import Any, Final

VERIFICATION: Final = "1.2.840.10008.1.1"

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"

# What an SCU proposes by default and an SCP always accepts (DCMTK proposes the same three).
UNCOMPRESSED_TRANSFER_SYNTAXES: Final = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)
_NATIVE: Final = frozenset((*UNCOMPRESSED_TRANSFER_SYNTAXES, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN))

def is_uncompressed(transfer_syntax: str) -> bool:
    """Native pixel data (deflate compresses the whole data set, but losslessly and re-encodable)."""
    return transfer_syntax in _NATIVE


# ALL_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES and COMMON_STORAGE_SOP_CLASSES come from pydicom's tables, computed on first use (PEP 562):
# importing pydicom takes ~0.2 s, which an `aiodicom echo` or a client that only echoes need not wait for.
def __getattr__(name: str) -> Any:
    if name == "ALL_TRANSFER_SYNTAXES":
        return _all_transfer_syntaxes()
    if name == "STORAGE_SOP_CLASSES":
        return _storage_classes()
    if name == "COMMON_STORAGE_SOP_CLASSES":
        return _common_storage_classes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _all_transfer_syntaxes() -> tuple[str, ...]:
    """Every transfer syntax pydicom knows: native, deflated and every encapsulated (compressed) one."""
    from pydicom.uid import AllTransferSyntaxes

    return tuple(dict.fromkeys([*UNCOMPRESSED_TRANSFER_SYNTAXES, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
                                *(str(u) for u in AllTransferSyntaxes)]))


@functools.cache
def _storage_classes() -> tuple[str, ...]:
    """Every Storage SOP class pydicom knows, retired ones included (old modalities still send them)."""
    from pydicom._uid_dict import UID_dictionary

    out = []
    for uid, (name, kind, *_rest) in UID_dictionary.items():
        if kind != "SOP Class" or "Storage" not in name:
            continue
        if "Commitment" in name or "Storage Management" in name or uid == "1.2.840.10008.1.3.10":
            continue  # commitment/management are not storage; 1.3.10 is the DICOMDIR (Media Storage Directory)
        out.append(uid)
    return tuple(out)


def uid_name(uid: str) -> str:
    """The standard's name for a UID ("JPEG Baseline (Process 1)"), else the UID itself."""
    from pydicom._uid_dict import UID_dictionary

    entry = UID_dictionary.get(uid)
    return entry[0] if entry else uid


# Query/Retrieve information models (PS3.4 Annex C.6) and Modality Worklist (PS3.4 K.6)
PATIENT_ROOT_FIND: Final = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE: Final = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET: Final = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND: Final = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE: Final = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET: Final = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_STUDY_ONLY_FIND: Final = "1.2.840.10008.5.1.4.1.2.3.1"  # retired, still queried by old systems
PATIENT_STUDY_ONLY_MOVE: Final = "1.2.840.10008.5.1.4.1.2.3.2"
PATIENT_STUDY_ONLY_GET: Final = "1.2.840.10008.5.1.4.1.2.3.3"
MODALITY_WORKLIST_FIND: Final = "1.2.840.10008.5.1.4.31"

# model name (as the CLI spells it) → (FIND, MOVE, GET) SOP classes
QR_MODELS: Final = {
    "patient": (PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET),
    "study": (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET),
    "psonly": (PATIENT_STUDY_ONLY_FIND, PATIENT_STUDY_ONLY_MOVE, PATIENT_STUDY_ONLY_GET),
    "worklist": (MODALITY_WORKLIST_FIND, None, None),
}

@functools.cache
def _common_storage_classes() -> tuple[str, ...]:
    """The storage classes a C-GET SCU offers to receive by default: the common image and document classes,
    few enough to leave room in the 128 presentation contexts of one association (getscu does the same)."""
    from pydicom._uid_dict import UID_dictionary

    words = ("CT Image", "MR Image", "Computed Radiography", "Digital X-Ray", "Digital Mammography", "Ultrasound",
             "Secondary Capture", "Nuclear Medicine", "Positron Emission", "X-Ray Angiographic",
             "X-Ray Radiofluoroscopic", "RT ", "Enhanced CT", "Enhanced MR", "Grayscale Softcopy", "Basic Text SR",
             "Enhanced SR", "Comprehensive SR", "Key Object", "Encapsulated PDF", "VL ", "Segmentation", "Raw Data")
    return tuple(uid for uid in _storage_classes()
                 if any(word in uid_name(uid) for word in words) and UID_dictionary[uid][3] != "Retired")


