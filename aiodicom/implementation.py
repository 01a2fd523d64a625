"""Who we are on the wire and in files: PS3.7 D.3.3.2 / PS3.10 §7.1 implementation identification.

Sent in A-ASSOCIATE-RQ/AC (Implementation Class UID and Version Name sub-items) and written in the
file meta of every stored instance, so that a peer or a file reader can tell which build produced it.
"""

from __future__ import annotations

from typing import Final

# PS3.5 §B.2: a UUID-derived UID under the 2.25 root; generated once and fixed forever.
IMPLEMENTATION_CLASS_UID: Final = "2.25.221435411729789653338705508322894957323"

# PS3.7 D.3.3.2.2: up to 16 characters of the default repertoire (SH); bump with the wire behaviour.
IMPLEMENTATION_VERSION_NAME: Final = "AIODICOM_010"
