"""Where instances live: PS3.10 files on disk (filestore), read without decoding (peek).

The index (SQLite by default) and C-FIND matching sit next to these modules and build on them.
"""

from aiodicom.archive.errors import (
    ArchiveError,
    DataSetMismatch,
    DuplicateInstance,
    InvalidDataSet,
    InvalidUID,
    NeedMoreData,
    PeekError,
    StorageError,
    StorageFull,
)
from aiodicom.archive.fileformat import FileMeta, encode_file_meta, parse_file_meta
from aiodicom.archive.filestore import (
    DuplicatePolicy,
    FileStore,
    IncomingInstance,
    StoredInstance,
    StoreOutcome,
)
from aiodicom.archive.groupcommit import DataSync
from aiodicom.archive.peek import INDEX_TAGS, decode_text, inflate_head, peek, peek_file, text_value
from aiodicom.archive.uid import is_valid_ae_title, is_valid_uid, validate_uid

__all__ = [
    "INDEX_TAGS",
    "ArchiveError",
    "DataSetMismatch",
    "DataSync",
    "DuplicateInstance",
    "DuplicatePolicy",
    "FileMeta",
    "FileStore",
    "IncomingInstance",
    "InvalidDataSet",
    "InvalidUID",
    "NeedMoreData",
    "PeekError",
    "StorageError",
    "StorageFull",
    "StoreOutcome",
    "StoredInstance",
    "decode_text",
    "encode_file_meta",
    "inflate_head",
    "is_valid_ae_title",
    "is_valid_uid",
    "parse_file_meta",
    "peek",
    "peek_file",
    "text_value",
    "validate_uid",
]
