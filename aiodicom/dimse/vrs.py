"""Facts about value representations (PS3.5 §6.2) that several codecs share."""

from __future__ import annotations

from typing import Final

# PS3.5 §6.1.2.3: the VRs whose values are coded in the Specific Character Set
CHARSET_VRS: Final = frozenset({"SH", "LO", "ST", "PN", "LT", "UC", "UT"})

# Binary numeric VRs and their struct format codes (byte order added by the caller)
BINARY_NUMBERS: Final = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}

# PS3.5 §7.1.2 (Table 7.1-1): explicit VR elements of these VRs have 2 reserved bytes and a 32-bit length
LONG_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
LONG_VR_CODES: Final = frozenset(vr.encode() for vr in LONG_VRS)  # as they stand in an encoded element
