"""Routing rules: conditions on the association and on attributes read by the header peek (never decoded),
first match wins unless `continue`, default action, tag morphing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)

from aiodicom.archive.peek import peek
from aiodicom.dimse.dataset import EncodedDataset
from aiodicom.route.attributes import Facts, RuleError, attribute
from aiodicom.route.ingest import peek_head
from aiodicom.route.morph import compile_morph
from aiodicom.route.rules import (
    Action,
    NumberPattern,
    RuleSet,
    WildcardPattern,
    compile_rule,
    compile_rules,
)

DESTS = ("PACS", "ARCHIVE", "RESEARCH")
SYNTAXES = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)


def facts(*, calling: str = "CT1", called: str = "ROUTER", peer: str = "10.1.2.3", sop_class: str = CTImageStorage,
          ts: str = ExplicitVRLittleEndian, **attrs: bytes) -> Facts:
    return Facts(calling_ae=calling, called_ae=called, peer=peer, sop_class_uid=sop_class, transfer_syntax=ts,
                 attributes={attribute(k).tag: v for k, v in attrs.items()})


def rule(**table) -> object:
    table.setdefault("forward", ["PACS"])
    return compile_rule(table, "rule 1", DESTS)


def matches(table: dict, f: Facts) -> bool:
    return rule(**table).matches(f)


# ---- attributes ----------------------------------------------------------------------------------------

def test_attribute_by_keyword_and_by_tag_name_the_same_element() -> None:
    assert attribute("PatientID") == attribute("0010,0020") == attribute("(0010,0020)")
    assert attribute("PatientID").vr == "LO"
    assert attribute("0009,0010").vr == "LO"  # a private creator is text


@pytest.mark.parametrize("bad", ["PatientNmae", "0002,0010", "(0000,0100)", "FFFE,E000", "12345"])
def test_attribute_refuses_unknown_keywords_and_non_data_set_tags(bad: str) -> None:
    with pytest.raises(RuleError):
        attribute(bad)


def test_binary_numbers_are_read_in_the_byte_order_of_the_transfer_syntax() -> None:
    rows = attribute("Rows")
    assert facts(Rows=struct.pack("<H", 512)).value(rows) == (512,)
    assert facts(ts=ExplicitVRBigEndian, Rows=struct.pack(">H", 512)).value(rows) == (512,)


def test_text_is_decoded_with_the_specific_character_set() -> None:
    f = facts(SpecificCharacterSet=b"ISO_IR 100", PatientName=b"M\xfcller^Hans ")
    assert f.value(attribute("PatientName")) == "Müller^Hans"
    assert matches({"match": {"PatientName": "Müller*"}}, f)


# ---- conditions ------------------------------------------------------------------------------------------

def test_ae_titles_match_wild_cards_lists_and_negations() -> None:
    assert matches({"calling_ae": "CT*"}, facts(calling="CT1"))
    assert not matches({"calling_ae": "CT*"}, facts(calling="MR1"))
    assert matches({"calling_ae": ["MR?", "CT?"]}, facts(calling="CT1"))
    assert not matches({"calling_ae": ["*", "!CT1"]}, facts(calling="CT1"))
    assert matches({"calling_ae": "!CT1"}, facts(calling="CT2"))
    assert matches({"called_ae": "ROUTER"}, facts(called="ROUTER"))
    assert not matches({"called_ae": "ROUTER"}, facts(called="ROUTER2"))


def test_regular_expressions_are_searched_and_may_be_anchored() -> None:
    assert matches({"calling_ae": "re:T1"}, facts(calling="CT1"))
    assert not matches({"calling_ae": "re:^T1"}, facts(calling="CT1"))
    assert matches({"match": {"PatientID": r"re:^A\d+$"}}, facts(PatientID=b"A123 "))
    assert not matches({"match": {"PatientID": r"re:^A\d+$"}}, facts(PatientID=b"A12B"))


def test_peer_matches_addresses_networks_and_patterns() -> None:
    assert matches({"peer": "10.0.0.0/8"}, facts(peer="10.1.2.3"))
    assert not matches({"peer": "10.0.0.0/8"}, facts(peer="192.168.1.1"))
    assert matches({"peer": "10.1.2.3"}, facts(peer="10.1.2.3"))
    assert matches({"peer": ["192.168.0.0/16", "10.1.*"]}, facts(peer="10.1.9.9"))
    assert matches({"peer": "::1"}, facts(peer="::1"))


def test_sop_class_by_keyword_uid_or_wild_card() -> None:
    assert matches({"sop_class": "CTImageStorage"}, facts(sop_class=CTImageStorage))
    assert not matches({"sop_class": "CTImageStorage"}, facts(sop_class=MRImageStorage))
    assert matches({"sop_class": MRImageStorage}, facts(sop_class=MRImageStorage))
    assert matches({"sop_class": "1.2.840.10008.5.1.4.1.1.*"}, facts(sop_class=MRImageStorage))
    assert not matches({"sop_class": "1.2.840.10008.5.1.4.1.1.2"}, facts(sop_class="1.2.840.10008.5.1.4.1.1.20"))


def test_modality_and_attributes_use_c_find_semantics() -> None:
    ct = facts(Modality=b"CT", StudyDate=b"20240315", ImageType=b"ORIGINAL\\PRIMARY\\LOCALIZER ")
    assert matches({"modality": ["CT", "MR"]}, ct)
    assert matches({"modality": "CT\\MR"}, ct)  # a backslash list is C-FIND's own list form
    assert not matches({"modality": "MR"}, ct)
    assert matches({"match": {"StudyDate": "20240101-20241231"}}, ct)
    assert matches({"match": {"StudyDate": "20240301-"}}, ct)
    assert not matches({"match": {"StudyDate": "-20231231"}}, ct)
    assert matches({"match": {"ImageType": "LOCALIZER"}}, ct)  # any value of a multi-valued attribute
    assert matches({"match": {"0008,0060": "C?"}}, ct)


def test_absent_attributes_match_only_empty_value_patterns() -> None:
    f = facts(Modality=b"CT")
    assert not matches({"match": {"PatientID": "*X*"}}, f)
    assert matches({"match": {"PatientID": '""'}}, f)
    assert matches({"match": {"PatientID": "!X*"}}, f)  # "not X...": an absent value is not X
    assert not matches({"match": {"Modality": '""'}}, f)


def test_numbers_compare_by_value_with_ranges() -> None:
    f = facts(SeriesNumber=b"05", Rows=struct.pack("<H", 512))
    assert matches({"match": {"SeriesNumber": "5"}}, f)
    assert matches({"match": {"SeriesNumber": "1-10"}}, f)
    assert not matches({"match": {"SeriesNumber": "6-"}}, f)
    assert matches({"match": {"Rows": "-512"}}, f)
    assert matches({"match": {"Rows": "100\\512"}}, f)
    assert not matches({"match": {"Rows": "513-1024"}}, f)


def test_uids_take_wild_cards() -> None:
    f = facts(StudyInstanceUID=b"1.2.826.0.1.3680043.2.1125.1.77\x00")
    assert matches({"match": {"StudyInstanceUID": "1.2.826.0.1.3680043.*"}}, f)
    assert not matches({"match": {"StudyInstanceUID": "1.3.*"}}, f)


@given(lo=st.integers(-10_000, 10_000), span=st.integers(0, 10_000), value=st.integers(-20_000, 20_000))
def test_number_range_holds_exactly_for_values_inside_it(lo: int, span: int, value: int) -> None:
    hi = lo + span
    assert NumberPattern.of(f"{lo}-{hi}").test(str(value)) == (lo <= value <= hi)  # "-5--1": both negative


@given(st.text(alphabet="ABCXYZ019 ^.-", min_size=1, max_size=12), st.text(alphabet="ABCXYZ019 ^.-", max_size=12))
def test_a_pattern_without_wild_cards_matches_only_itself(literal: str, other: str) -> None:
    pattern = WildcardPattern.of(literal.strip() or "A")
    assert pattern.test(literal.strip() or "A")
    if other.strip() != (literal.strip() or "A"):
        assert not pattern.test(other)


# ---- conditions on real data sets, read by the peek ---------------------------------------------------------

def _encoded(ts: str) -> EncodedDataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.PatientName = "Müller^Hans"
    ds.PatientID = "RES-0042"
    ds.StudyDate = "20240315"
    ds.Rows = 512
    ds.SeriesNumber = 7
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    return EncodedDataset.from_dataset(ds, ts)


@pytest.mark.parametrize("ts", SYNTAXES)
def test_rules_decide_the_same_in_every_transfer_syntax(ts: str) -> None:
    ruleset, problems = compile_rules([
        {"name": "research", "modality": "CT", "forward": ["RESEARCH"],
         "match": {"PatientID": "re:^RES-[0-9]+$", "Rows": "256-1024", "PatientName": "Mül*", "ImageType": "AXIAL",
                   "SeriesNumber": "7"}},
        {"name": "rest", "forward": ["PACS"]},
    ], "drop", DESTS)
    assert problems == []
    encoded = _encoded(ts)
    attrs = peek_head(encoded.read_bytes(), ts, ruleset.tags, complete=True)
    decision = ruleset.route(Facts(calling_ae="CT1", called_ae="ROUTER", peer="127.0.0.1", sop_class_uid=CTImageStorage,
                                   transfer_syntax=ts, attributes=attrs))
    assert decision.rules == ("research",)
    assert [d.destination for d in decision.deliveries] == ["RESEARCH"]


def test_rule_set_peeks_only_what_its_rules_read() -> None:
    ruleset, _ = compile_rules([{"modality": "CT", "match": {"PatientID": "A*"}, "forward": ["PACS"]},
                                {"calling_ae": "X", "forward": ["PACS"]}], "drop", DESTS)
    assert ruleset.tags == {0x00080060, 0x00100020, 0x00080005}
    assert compile_rules([{"calling_ae": "X", "forward": ["PACS"]}], "drop", DESTS)[0].tags == frozenset()


# ---- evaluation order and actions ---------------------------------------------------------------------------

def _ruleset(*tables: dict, default: object = "drop") -> RuleSet:
    ruleset, problems = compile_rules(list(tables), default, DESTS)
    assert problems == []
    return ruleset


def test_first_matching_rule_decides() -> None:
    rs = _ruleset({"name": "ct", "calling_ae": "CT*", "forward": ["PACS"]},
                  {"name": "all", "forward": ["ARCHIVE"]})
    d = rs.route(facts(calling="CT1"))
    assert d.action is Action.FORWARD and d.rules == ("ct",)
    assert [x.destination for x in d.deliveries] == ["PACS"]
    assert [x.destination for x in rs.route(facts(calling="MR1")).deliveries] == ["ARCHIVE"]


def test_continue_lets_later_rules_add_destinations_once_each() -> None:
    rs = _ruleset({"name": "a", "forward": ["PACS"], "continue": True},
                  {"name": "b", "forward": ["PACS", "RESEARCH"], "morph": {"delete": ["PatientName"]}},
                  {"name": "c", "forward": ["ARCHIVE"]})
    d = rs.route(facts())
    assert d.rules == ("a", "b")
    assert [(x.destination, x.rule, x.morph is None) for x in d.deliveries] == [
        ("PACS", "a", True), ("RESEARCH", "b", False)]


def test_drop_and_reject_rules() -> None:
    rs = _ruleset({"name": "copy", "forward": ["ARCHIVE"], "continue": True},
                  {"name": "scouts", "match": {"ImageType": "*LOCALIZER*"}, "action": "drop"},
                  {"name": "nope", "calling_ae": "BAD", "action": "reject"},
                  {"name": "all", "forward": ["PACS"]})
    scout = rs.route(facts(ImageType=b"ORIGINAL\\LOCALIZER"))
    assert scout.action is Action.FORWARD and [x.destination for x in scout.deliveries] == ["ARCHIVE"]
    assert rs.route(facts(calling="BAD")).action is Action.REJECT
    only_drop = _ruleset({"name": "scouts", "action": "drop"}).route(facts())
    assert only_drop.action is Action.DROP and only_drop.deliveries == ()


@pytest.mark.parametrize(("default", "action", "dests"), [
    ("drop", Action.DROP, []), ("reject", Action.REJECT, []),
    (["PACS", "ARCHIVE"], Action.FORWARD, ["PACS", "ARCHIVE"]),
    ("PACS", Action.FORWARD, ["PACS"]),
])
def test_an_instance_no_rule_matches_gets_the_default(default: object, action: Action, dests: list[str]) -> None:
    d = _ruleset({"calling_ae": "NOBODY", "forward": ["RESEARCH"]}, default=default).route(facts())
    assert d.action is action and d.rules == ("default",)
    assert [x.destination for x in d.deliveries] == dests


def test_without_a_default_an_instance_no_rule_matches_is_refused_not_dropped() -> None:
    unmatched = _ruleset({"calling_ae": "NOBODY", "forward": ["RESEARCH"]}, default=None).route(facts())
    assert unmatched.action is Action.UNROUTED and unmatched.rules == ("default",) and unmatched.deliveries == ()
    matched = _ruleset({"calling_ae": "CT*", "forward": ["PACS"]}, default=None).route(facts())
    assert matched.action is Action.FORWARD  # only what no rule matches is refused


def test_a_default_whose_own_conditions_exclude_an_instance_refuses_it_too() -> None:
    # default = { forward = [...], modality = "MR" }: a CT instance matched nothing at all
    rs = _ruleset({"calling_ae": "NOBODY", "forward": ["RESEARCH"]}, default={"forward": ["PACS"], "modality": "MR"})
    assert rs.route(facts()).action is Action.UNROUTED
    assert rs.route(facts(Modality=b"MR")).action is Action.FORWARD


@pytest.mark.parametrize("where", ["default", "rule"])
def test_unrouted_is_not_an_action_one_can_configure(where: str) -> None:
    tables = [{"calling_ae": "X", "action": "unrouted"}] if where == "rule" else []
    _, problems = compile_rules(tables, "unrouted" if where == "default" else "drop", DESTS)
    assert len(problems) == 1, problems


# ---- rule errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("table", "message"), [
    ({"forward": ["PACZ"]}, "unknown destination 'PACZ' (known: ARCHIVE, PACS, RESEARCH)"),
    ({"match": {"PatientNmae": "X"}}, "'PatientNmae' is not a DICOM keyword"),
    ({"calling_ae": "re:(unclosed"}, "bad regular expression"),
    ({"match": {"PixelData": "X"}}, "VR OB"),
    ({"match": {"PixelData": "re:X"}}, "VR OB"),  # a regex would search raw binary bytes
    ({"match": {"ReferencedImageSequence": "re:."}}, "VR SQ"),
    ({"match": {"ReferencedImageSequence[0].ReferencedSOPInstanceUID": "1.2*"}}, "is not a DICOM keyword"),
    ({"match": {"Rows": "many"}}, "'many' is not a number"),
    ({"match": {"StudyDate": "2024-01-01-02"}}, "StudyDate"),
    ({"sop_class": "CTImageStorag"}, "not a SOP class UID or keyword"),
    ({"peer": "10.0.0.0/33"}, "not an address or network"),
    ({"calling_ae": ""}, "empty pattern"),
    ({"calling_ae": []}, "empty list"),
    ({"modality": 3.5j}, "expected text"),
    ({"froward": ["PACS"]}, "unknown keys ['froward']"),
    ({"action": "drop", "forward": ["PACS"]}, "not both"),
    ({"action": "drop", "morph": {"delete": ["PatientName"]}}, "morph needs destinations"),
    ({"continue": "yes"}, "expected true or false"),
])
def test_bad_rules_are_refused_with_a_message_naming_the_problem(table: dict, message: str) -> None:
    if "action" not in table:
        table.setdefault("forward", ["PACS"])
    with pytest.raises(RuleError) as err:
        compile_rule(table, "rule 3 ('x')", DESTS)
    assert str(err.value).startswith("rule 3 ('x')")
    assert message in str(err.value)


def test_rule_without_action_is_refused() -> None:
    with pytest.raises(RuleError, match="needs forward"):
        compile_rule({"calling_ae": "X"}, "rule 1", DESTS)


def test_every_bad_rule_is_reported_not_only_the_first() -> None:
    _, problems = compile_rules([{"forward": ["NOPE"]}, {"name": "ok", "forward": ["PACS"]},
                                 {"match": {"Nope": "1"}, "forward": ["PACS"]}, {"name": "ok", "forward": ["PACS"]}],
                                "elsewhere", DESTS)
    assert len(problems) == 4
    assert problems[0].startswith("rule 1.forward:") and "NOPE" in problems[0]
    assert problems[1].startswith("rule 3.match:")
    assert "already named 'ok'" in problems[2]
    assert problems[3].startswith("router.default")


def test_every_problem_of_one_rule_is_reported() -> None:
    _, problems = compile_rules([{"calling_ae": "re:(unclosed", "match": {"Nope": "1", "Rows": "many"},
                                  "forward": ["NOPE"], "continue": "yes", "froward": 1}], "drop", DESTS)
    assert [p.split(":")[0] for p in problems] == ["rule 1", "rule 1.calling_ae", "rule 1.match",
                                                    "rule 1.match.Rows", "rule 1.forward", "rule 1.continue"]


# ---- morphing -----------------------------------------------------------------------------------------------

def _dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.PatientID = "P1"
    ds.PatientBirthDate = "19700101"
    ds.InstitutionName = "Old Name"
    ds.StudyDescription = "CT HEAD protocol 7"
    ds.add_new(0x00090010, "LO", "VENDOR")
    ds.add_new(0x00091001, "LO", "secret")
    return ds


def test_morph_sets_replaces_substitutes_and_deletes() -> None:
    morph = compile_morph({
        "set": {"InstitutionName": "General Hospital", "InstitutionalDepartmentName": "Radiology", "Rows": 64},
        "replace": {"PatientID": "ANON", "AccessionNumber": "ABSENT-STAYS",
                    "StudyDescription": {"pattern": r"protocol (\d+)", "with": r"p\1"}},
        "delete": ["PatientBirthDate", "0010,1000"],
        "delete_private": True,
    }, "rule 1.morph")
    ds = _dataset()
    morph.apply(ds)
    assert ds.InstitutionName == "General Hospital"
    assert ds.InstitutionalDepartmentName == "Radiology"
    assert ds.Rows == 64
    assert ds.PatientID == "ANON"
    assert "AccessionNumber" not in ds
    assert ds.StudyDescription == "CT HEAD p7"
    assert "PatientBirthDate" not in ds
    assert 0x00091001 not in ds and 0x00090010 not in ds
    assert ds.PatientName == "Doe^John"


def test_delete_everywhere_reaches_into_sequence_items_and_delete_does_not() -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def nested() -> Dataset:
        ds = _dataset()
        modified = Dataset()
        modified.PatientName = "Doe^Original"
        modified.PatientBirthDate = "19700101"
        original = Dataset()
        original.ModifiedAttributesSequence = Sequence([modified])
        ds.OriginalAttributesSequence = Sequence([original])
        return ds

    everywhere = nested()
    compile_morph({"delete_everywhere": ["PatientName", "PatientBirthDate"]}, "rule 1.morph").apply(everywhere)
    inner = everywhere.OriginalAttributesSequence[0].ModifiedAttributesSequence[0]
    assert "PatientName" not in everywhere and "PatientName" not in inner and "PatientBirthDate" not in inner
    assert everywhere.PatientID == "P1"  # the rest stays

    top_only = nested()
    compile_morph({"delete": ["PatientName"]}, "rule 1.morph").apply(top_only)
    assert "PatientName" not in top_only
    assert top_only.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].PatientName == "Doe^Original"


@pytest.mark.parametrize(("table", "message"), [
    ({"delete": ["PatientID"], "delete_everywhere": ["PatientID"]}, "more than once"),
    ({"delete_everywhere": [7]}, "is not an attribute name"),
    ({"set": {"Rows": "many"}}, "needs an integer"),
    ({"set": {"PatientNmae": "X"}}, "not a DICOM keyword"),
    ({"set": {"PatientID": "X" * 65}}, "cannot hold"),
    ({"set": {"ReferencedImageSequence": "X"}}, "VR SQ"),
    ({"set": {"PatientID": "A"}, "delete": ["PatientID"]}, "more than once"),
    ({"replace": {"PatientName": {"pattern": "(", "with": "x"}}}, "bad regular expression"),
    ({"replace": {"PatientName": {"pattern": "x", "with": r"\9"}}}, "bad regular expression"),
    ({"replace": {"Rows": {"pattern": "x", "with": "y"}}}, "is not text"),
    ({"rename": {}}, "unknown morph keys"),
])
def test_bad_morphs_are_refused_at_start(table: dict, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(")):
        compile_morph(table, "rule 1.morph")


def test_peek_of_a_large_head_finds_rule_attributes_without_decoding() -> None:
    encoded = _encoded(ExplicitVRLittleEndian)
    raw = encoded.read_bytes()
    assert peek(raw, ExplicitVRLittleEndian, frozenset({0x00100020}), complete=True) == {0x00100020: b"RES-0042"}
