"""How `aiodicom store` groups files into associations and presentation contexts."""

from pathlib import Path

import pytest

from aiodicom.cli.store import Item, batches
from aiodicom.uids import (
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
MPEG2 = "1.2.840.10008.1.2.4.100"


def item(n: int, sop_class: str, ts: str) -> Item:
    return Item(Path(f"f{n}"), sop_class=sop_class, sop_instance=f"1.2.{n}", transfer_syntax=ts)


def test_the_files_own_syntax_gets_a_context_of_its_own_with_uncompressed_fallbacks_apart():
    ((contexts, items),) = batches([item(1, "1.2.3", IMPLICIT_VR_LITTLE_ENDIAN)])
    assert contexts == [("1.2.3", (IMPLICIT_VR_LITTLE_ENDIAN,)),
                        ("1.2.3", (EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN))]
    assert [i.path.name for i in items] == ["f1"]


def test_a_compressed_file_gets_an_uncompressed_fallback_only_when_it_can_be_decoded():
    pytest.importorskip("pylibjpeg", reason="the convert extra decodes JPEG")
    ((contexts, _),) = batches([item(1, "1.2.3", JPEG_BASELINE)])
    assert contexts == [("1.2.3", (JPEG_BASELINE,)), ("1.2.3", UNCOMPRESSED_TRANSFER_SYNTAXES)]
    ((contexts, _),) = batches([item(2, "1.2.3", MPEG2)])  # no decoder for video: nothing to fall back to
    assert contexts == [("1.2.3", (MPEG2,))]


def test_files_sharing_class_and_syntax_share_contexts():
    ((contexts, items),) = batches([item(n, "1.2.3", MPEG2) for n in range(5)])
    assert len(contexts) == 1 and len(items) == 5


def test_more_than_128_contexts_split_into_several_associations_keeping_every_file():
    files = [item(n, f"1.2.{n}", EXPLICIT_VR_LITTLE_ENDIAN) for n in range(100)]  # 2 contexts each
    groups = batches(files)
    assert len(groups) == 2
    assert all(len(contexts) <= 128 for contexts, _ in groups)
    assert sorted(i.sop_instance for _, items in groups for i in items) == sorted(f.sop_instance for f in files)
    for contexts, items in groups:  # every file's class is proposed on the association that sends it
        proposed = {c for c, _ in contexts}
        assert all(i.sop_class in proposed for i in items)
