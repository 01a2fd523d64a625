"""Tag morphing: set, replace (plainly or by regular expression) and delete top-level attributes of a decoded
data set before it is forwarded, e.g. to stamp an institution or strip patient identifiers; delete them at
every nesting level too (`delete_everywhere`, as DCMTK's `dcmodify -ea`: an identifier may also sit in a
sequence item, e.g. Original Attributes). Every value is checked at start (pydicom must be able to write
it), never on the first instance."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset

from .attributes import TEXT_VRS, Attribute, RuleError, as_text, attribute


@dataclass(frozen=True, slots=True)
class SetValue:
    attr: Attribute
    value: Any  # what pydicom stores (str, int, float or a list of them)
    only_if_present: bool  # "replace": leave absent attributes absent


@dataclass(frozen=True, slots=True)
class Substitute:
    attr: Attribute
    regex: re.Pattern[str]
    replacement: str


@dataclass(frozen=True, slots=True)
class Morph:
    """Tag morphing applied to a decoded data set before it is forwarded: deletions first, then
    values set, then values replaced where present (plain or by regular expression)."""

    deletes: tuple[Attribute, ...] = ()
    deletes_everywhere: tuple[Attribute, ...] = ()  # in sequence items at any depth too
    delete_private: bool = False
    sets: tuple[SetValue, ...] = ()
    substitutes: tuple[Substitute, ...] = ()

    def apply(self, ds: Dataset) -> None:
        if self.delete_private:
            ds.remove_private_tags()
        for attr in self.deletes:
            if attr.tag in ds:
                del ds[attr.tag]
        if self.deletes_everywhere:
            _delete_everywhere(ds, frozenset(a.tag for a in self.deletes_everywhere))
        for op in self.sets:
            if op.only_if_present and op.attr.tag not in ds:
                continue
            if op.attr.tag in ds:
                ds[op.attr.tag].value = op.value
            else:
                ds.add_new(op.attr.tag, op.attr.vr, op.value)
        for sub in self.substitutes:
            if sub.attr.tag in ds:
                elem = ds[sub.attr.tag]
                elem.value = sub.regex.sub(sub.replacement, as_text(elem.value) if not isinstance(elem.value, str)
                                           else elem.value)

    @property
    def empty(self) -> bool:
        return not (self.deletes or self.deletes_everywhere or self.delete_private or self.sets or self.substitutes)


def _delete_everywhere(ds: Dataset, tags: frozenset[int]) -> None:
    for elem in list(ds):
        if elem.tag in tags:
            del ds[elem.tag]
        elif elem.VR == "SQ" and elem.value:
            for item in elem.value:
                _delete_everywhere(item, tags)


def _morph_value(attr: Attribute, value: Any, where: str) -> Any:
    if attr.vr == "SQ" or attr.vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "AT"):
        raise RuleError(f"{where}: {attr.name} has VR {attr.vr}; morphing sets text and numbers only")
    values = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise RuleError(f"{where}: {attr.name}: {v!r} is not text or a number")
        if attr.vr in ("US", "SS", "UL", "SL", "UV", "SV"):
            try:
                out.append(int(v))
            except ValueError:
                raise RuleError(f"{where}: {attr.name} (VR {attr.vr}) needs an integer, got {v!r}") from None
        elif attr.vr in ("FL", "FD"):
            try:
                out.append(float(v))
            except ValueError:
                raise RuleError(f"{where}: {attr.name} (VR {attr.vr}) needs a number, got {v!r}") from None
        else:
            out.append(str(v))
    result = out[0] if len(out) == 1 else out
    _check_encodable(attr, result, where)
    return result


def _check_encodable(attr: Attribute, value: Any, where: str) -> None:
    """Fail at start, not on the first instance: pydicom must be able to write this value."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an invalid value for the VR is refused now, not sent
            ds.add_new(attr.tag, attr.vr, value)
            write_dataset(fp, ds)
    except Exception as exc:  # noqa: BLE001 - pydicom raises several types for values a VR cannot hold
        raise RuleError(f"{where}: {attr.name} cannot hold {value!r}: {exc}") from None


def compile_morph(table: Mapping[str, Any], where: str) -> Morph:
    keys = ("set", "replace", "delete", "delete_everywhere", "delete_private")
    unknown = set(table) - set(keys)
    if unknown:
        raise RuleError(f"{where}: unknown morph keys {sorted(unknown)} ({', '.join(keys)})")
    deletes, everywhere = _names(table, "delete", where), _names(table, "delete_everywhere", where)
    sets: list[SetValue] = []
    subs: list[Substitute] = []
    for key, only in (("set", False), ("replace", True)):
        section = table.get(key, {})
        if not isinstance(section, Mapping):
            raise RuleError(f"{where}.{key}: expected a table of attribute = value")
        for name, value in section.items():
            attr = _morph_attribute(name, f"{where}.{key}")
            if key == "replace" and isinstance(value, Mapping):
                subs.append(_substitute(attr, value, f"{where}.replace.{name}"))
            else:
                sets.append(SetValue(attr, _morph_value(attr, value, f"{where}.{key}"), only))
    delete_private = table.get("delete_private", False)
    if not isinstance(delete_private, bool):
        raise RuleError(f"{where}.delete_private: expected true or false")
    attrs = [*deletes, *everywhere, *(s.attr for s in sets), *(s.attr for s in subs)]
    touched = [a.tag for a in attrs]
    twice = {t for t in touched if touched.count(t) > 1}
    if twice:
        names = sorted(a.name for a in attrs if a.tag in twice)
        raise RuleError(f"{where}: {names[0]} is morphed more than once")
    return Morph(tuple(deletes), tuple(everywhere), delete_private, tuple(sets), tuple(subs))


def _names(table: Mapping[str, Any], key: str, where: str) -> list[Attribute]:
    raw = table.get(key, [])
    out = []
    for name in raw if isinstance(raw, list) else [raw]:
        if not isinstance(name, str):
            raise RuleError(f"{where}.{key}: {name!r} is not an attribute name")
        out.append(_morph_attribute(name, f"{where}.{key}"))
    return out


def _morph_attribute(name: str, where: str) -> Attribute:
    try:
        return attribute(name)
    except RuleError as exc:
        raise RuleError(f"{where}: {exc}") from None


def _substitute(attr: Attribute, spec: Mapping[str, Any], where: str) -> Substitute:
    if set(spec) != {"pattern", "with"} or not all(isinstance(v, str) for v in spec.values()):
        raise RuleError(f"{where}: a regular expression replacement is {{ pattern = \"...\", with = \"...\" }}")
    if attr.vr not in TEXT_VRS:
        raise RuleError(f"{where}: {attr.name} (VR {attr.vr}) is not text")
    try:
        regex = re.compile(spec["pattern"])
        regex.sub(spec["with"], "")  # a bad group reference in `with` fails here, not per instance
    except re.error as exc:
        raise RuleError(f"{where}: bad regular expression: {exc}") from None
    return Substitute(attr, regex, spec["with"])
