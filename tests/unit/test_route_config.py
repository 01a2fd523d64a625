"""The router's TOML configuration: what a valid file gives, and that every problem is reported, each naming
where it is, before anything serves (`aiodicom route --check`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aiodicom.archive.groupcommit import DataSync
from aiodicom.cli.main import main as cli
from aiodicom.route.config import ConfigError, Mode, load_config, parse_config
from aiodicom.route.rules import Action
from tests.peers import TlsFiles

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "route.toml"

MINIMAL = """
[[listener]]
port = 11112

[destination.PACS]
ae_title = "PACS"
host = "127.0.0.1"
port = 104
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "route.toml"
    path.write_text(text)
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    return err.value.problems


def test_the_shipped_example_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.spool == EXAMPLE.parent / "route-spool"
    assert [li.mode for li in config.listeners] == [Mode.STORE_AND_FORWARD]
    assert set(config.destinations) == {"PACS", "RESEARCH"}
    assert config.destinations["RESEARCH"].transfer_syntaxes == ("1.2.840.10008.1.2",)
    assert config.retry.initial == 2.0 and config.retry.maximum == 300.0 and config.retry.max_age == 3 * 86400
    assert config.rules is not None
    assert [r.name for r in config.rules.rules] == ["no-scouts", "ct-mr-to-pacs", "research-copy", "reports"]
    assert config.rules.default.destinations == ("PACS",)


def test_defaults_of_a_minimal_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.spool == tmp_path / "spool"  # relative to the config file
    assert config.ae_title == "ROUTER" and config.sync is True
    li = config.listeners[0]
    assert (li.host, li.port, li.ae_title, li.mode, li.tls) == ("127.0.0.1", 11112, "ROUTER", Mode.STORE_AND_FORWARD,
                                                                None)
    pacs = config.destinations["PACS"]
    assert (pacs.calling_ae, pacs.max_associations, pacs.transfer_syntaxes, pacs.tls) == ("ROUTER", 2, (), None)
    # no default: what no rule matches is refused (the sender keeps it), never acknowledged and dropped
    assert config.rules is not None and config.rules.default.action is Action.UNROUTED
    explicit = load_config(write(tmp_path, MINIMAL + '[router]\ndefault = "drop"\n'))
    assert explicit.rules is not None and explicit.rules.default.action is Action.DROP
    assert config.memory_budget == 256 << 20
    assert config.sync_method is DataSync.FDATASYNC
    assert load_config(write(tmp_path, MINIMAL + '[router]\nsync_method = "syncfs"\n')).sync_method is DataSync.SYNCFS


@pytest.mark.parametrize(("value", "expected"), [('"64M"', 64 << 20), ('"1G"', 1 << 30), (str(8 << 20), 8 << 20)])
def test_memory_budget_takes_a_size(tmp_path: Path, value: str, expected: int) -> None:
    assert load_config(write(tmp_path, MINIMAL + f"[router]\nmemory_budget = {value}\n")).memory_budget == expected


@pytest.mark.parametrize("value", ['"lots"', "1000", '"512k"', "true"])
def test_memory_budget_below_1m_or_not_a_size_is_a_problem(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"router\.memory_budget: expected a size of at least 1M"):
        load_config(write(tmp_path, MINIMAL + f"[router]\nmemory_budget = {value}\n"))


def test_listener_and_destination_options(tmp_path: Path, tls_files: TlsFiles) -> None:
    shutil.copy(tls_files.ca_cert, tmp_path / "ca.crt")
    config = load_config(write(tmp_path, """
[router]
ae_title = "HUB"
sync = false
default = "reject"
[retry]
initial = "500ms"
maximum = "2m"
multiplier = 3
max_attempts = 4
max_age = "1.5h"
[[listener]]
host = "0.0.0.0"
port = 104
mode = "proxy"
allow_aet = ["CT1", "MR1"]
[destination.PACS]
ae_title = "PACS"
host = "pacs"
port = 104
calling_ae = "HUB-OUT"
max_associations = 8
transfer_syntaxes = ["JPEG2000Lossless", "1.2.840.10008.1.2.1"]
tls = { ca = "ca.crt", verify = false }
idle_timeout = 5
"""))
    assert config.ae_title == "HUB" and config.sync is False
    assert config.listeners[0].mode is Mode.PROXY
    assert config.listeners[0].allowed_calling == frozenset({"CT1", "MR1"})
    assert config.listeners[0].ae_title == "HUB"
    r = config.retry
    assert (r.initial, r.maximum, r.multiplier, r.max_attempts, r.max_age) == (0.5, 120.0, 3.0, 4, 5400.0)
    pacs = config.destinations["PACS"]
    assert pacs.calling_ae == "HUB-OUT" and pacs.max_associations == 8 and pacs.idle_timeout == 5.0
    assert pacs.transfer_syntaxes == ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1")
    assert pacs.tls is not None and pacs.tls.ca == tmp_path / "ca.crt" and pacs.tls.verify is False
    assert config.rules is not None and config.rules.default.action is Action.REJECT


@pytest.mark.parametrize(("extra", "expected"), [
    ('[[rule]]\nforward = ["PACZ"]\n', "rule 1.forward: unknown destination 'PACZ' (known: PACS)"),
    ('[[rule]]\nname = "x"\nmatch = { "0010,00ZZ" = "A" }\nforward = ["PACS"]\n',
     "rule 1 ('x').match: '0010,00ZZ' is not a DICOM keyword or a gggg,eeee tag"),
    ('[[rule]]\ncalling_ae = "re:[CT"\nforward = ["PACS"]\n', "rule 1.calling_ae: bad regular expression '[CT'"),
    ('[router]\ndefault = ["NOWHERE"]\n', "router.default.forward: unknown destination 'NOWHERE'"),
    ('[router]\nae_title = "A\\\\B"\n', "router.ae_title: 'A\\\\B' is not an AE title"),
    ('[router]\nspool = 3\n', "router.spool: expected text, got 3"),
    ('[router]\nsyncc = true\n', "router: unknown keys ['syncc']"),
    ('[router]\nsync_method = "fsyncfs"\n',
     "router.sync_method: expected one of 'fdatasync', 'fsync', 'syncfs', got 'fsyncfs'"),
    ('[retry]\nmaximum = "soon"\n', "retry.maximum: expected seconds or a duration"),
    ('[retry]\ninitial = 10\nmaximum = 5\n', "retry.maximum: 5.0 s is below initial (10.0 s)"),
    ('[retry]\nmax_attempts = 0\n', "retry.max_attempts: expected an integer >= 1, got 0"),
    ('[retry]\nmultiplier = 0.5\n', "retry.multiplier: expected a number >= 1"),
    ('[[listener]]\nport = 70000\n', "listener 2.port: expected an integer 0..65535, got 70000"),
    ('[[listener]]\nport = 11112\n', "listener: 127.0.0.1:11112 is configured twice"),
    ('[[listener]]\nport = 2000\nmode = "relay"\n',
     "listener 2.mode: 'relay' is not \"store-and-forward\" or \"proxy\""),
    ('[[listener]]\nport = 2000\ntls = { cert = "nope.crt", key = "nope.key" }\n', "listener 2.tls.cert: no such file"),
    ('[destination.B]\nhost = "h"\nport = 1\n', "destination.B.ae_title: missing (the called AE title)"),
    ('[destination.B]\nae_title = "B"\nport = 1\n', "destination.B.host: missing"),
    ('[destination.B]\nae_title = "B"\nhost = "h"\n', "destination.B.port: missing"),
    ('[destination.B]\nae_title = "B"\nhost = "h"\nport = 1\ntransfer_syntaxes = ["JPEG2001"]\n',
     "destination.B.transfer_syntaxes: 'JPEG2001' is not a transfer syntax UID or keyword"),
    ('[destination."a/b"]\nae_title = "B"\nhost = "h"\nport = 1\n', "destination.a/b: a destination name is"),
    ('[destination.B]\nae_title = "B"\nhost = "h"\nport = 1\ntls = { cert = "c.crt" }\n',
     "destination.B.tls: cert and key go together"),
    ('[destination.B]\nae_title = "B"\nhost = "h"\nport = 1\nmax_associations = 0\n',
     "destination.B.max_associations: expected an integer 1..64, got 0"),
    ('[routing]\n', "unknown sections ['routing']"),
    ('[router]\nworkers = 0\n', "router.workers: expected an integer 1..64, got 0"),
    ('[router]\nworkers = 2\n[[listener]]\nport = 0\n', "router: workers > 1 needs a fixed port"),
])
def test_each_problem_names_where_it_is(tmp_path: Path, extra: str, expected: str) -> None:
    problems = problems_of(tmp_path, MINIMAL + extra)
    assert any(p.startswith(expected) for p in problems), problems


# ---- TLS files: loaded as start-up loads them, not only found ----------------------------------------------

GARBAGE_PEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


def _tls_config(tmp_path: Path, listener: dict[str, Path], destination: dict[str, Path]) -> str:
    def table(files: dict[str, Path]) -> str:
        return "{ " + ", ".join(f'{k} = "{v}"' for k, v in files.items()) + " }"
    return MINIMAL + f"""[[listener]]
port = 2000
tls = {table(listener)}
[destination.SECURE]
ae_title = "SECURE"
host = "127.0.0.1"
port = 2762
tls = {table(destination)}
"""


def test_tls_files_that_load_are_accepted(tmp_path: Path, tls_files: TlsFiles) -> None:
    t = tls_files
    config = load_config(write(tmp_path, _tls_config(
        tmp_path, {"cert": t.server_cert, "key": t.server_key, "ca": t.ca_cert},
        {"ca": t.ca_cert, "cert": t.client_cert, "key": t.client_key})))
    assert config.listeners[1].tls is not None and config.destinations["SECURE"].tls is not None


def test_tls_files_that_cannot_be_loaded_are_each_named(tmp_path: Path, tls_files: TlsFiles) -> None:
    t = tls_files
    bad_cert, bad_key, bad_ca = tmp_path / "bad.crt", tmp_path / "bad.key", tmp_path / "bad-ca.crt"
    bad_cert.write_text(GARBAGE_PEM)
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    bad_ca.write_text("not PEM at all\n")
    problems = problems_of(tmp_path, _tls_config(tmp_path, {"cert": bad_cert, "key": t.server_key},
                                                 {"ca": bad_ca, "cert": t.client_cert, "key": bad_key}))
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"listener 2.tls.cert: cannot load {bad_cert}: "), problems
    assert problems[1].startswith(f"destination.SECURE.tls.ca: cannot load {bad_ca}: "), problems
    assert problems[2].startswith(f"destination.SECURE.tls.key: cannot load {bad_key} as the private key of "
                                  f"{t.client_cert}: "), problems
    # a key that is not the certificate's: named too
    [mismatch] = problems_of(tmp_path, _tls_config(tmp_path, {"cert": t.server_cert, "key": t.client_key},
                                                   {"ca": t.ca_cert}))
    assert mismatch.startswith(f"listener 2.tls.key: cannot load {t.client_key} as the private key of "
                               f"{t.server_cert}: "), mismatch


def test_check_and_start_up_both_refuse_unloadable_tls_files_in_one_line(
        tmp_path: Path, tls_files: TlsFiles, capsys: pytest.CaptureFixture[str]) -> None:
    bad_cert = tmp_path / "bad.crt"
    bad_cert.write_text(GARBAGE_PEM)
    path = write(tmp_path, _tls_config(tmp_path, {"cert": bad_cert, "key": tls_files.server_key},
                                       {"ca": tls_files.ca_cert}))
    for argv in (["route", "--check", str(path)], ["route", "--config", str(path)]):
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"listener 2.tls.cert: cannot load {bad_cert}" in err, err
    assert not (tmp_path / "spool").exists()  # nothing started


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL + """
[retry]
initial = "forever"
[[rule]]
forward = ["NOPE"]
[[rule]]
match = { NotAKeyword = "1" }
forward = ["PACS"]
""")
    assert len(problems) == 3, problems
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL + '[[rule]]\nforward = ["NOPE"]\n'))
    assert str(err.value).startswith(str(tmp_path / "route.toml") + ": rule 1.forward")


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[router\n"))
    with pytest.raises(ConfigError, match="rule: write each rule as a"):
        parse_config({"rule": {"forward": "PACS"}}, base=tmp_path)


# ---- aiodicom route --check -------------------------------------------------------------------------------

def test_check_accepts_a_valid_file_and_serves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, MINIMAL + '[[rule]]\nmodality = "CT"\nforward = ["PACS"]\n')
    assert cli(["route", "--check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid: 1 listener(s), 1 destination(s), 1 rule(s)" in out
    assert "default: not set: an instance no rule matches is refused (0xA700" in out
    assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize(("default", "said"), [('"drop"', "default: drop (Success, then discarded)"),
                                               ('"reject"', "default: reject (0x0124"),
                                               ('["PACS"]', "default: forward to PACS")])
def test_check_says_what_the_default_does(tmp_path: Path, capsys: pytest.CaptureFixture[str], default: str,
                                          said: str) -> None:
    assert cli(["route", "--check", str(write(tmp_path, MINIMAL + f"[router]\ndefault = {default}\n"))]) == 0
    assert said in capsys.readouterr().out


def test_check_tells_how_workers_share_a_destination_with_fewer_associations(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = MINIMAL.replace("port = 104\n", "port = 104\nmax_associations = 1\n") + "[router]\nworkers = 2\n"
    assert cli(["route", "--check", str(write(tmp_path, one))]) == 0
    out = capsys.readouterr()
    assert "destination PACS: max_associations = 1 < workers = 2: only the first process delivers to it" in out.out
    assert "warning" not in out.err
    proxy = one.replace("port = 11112\n", 'port = 11112\nmode = "proxy"\n', 1)
    assert cli(["route", "--check", str(write(tmp_path, proxy))]) == 0
    assert ("warning: proxy mode with workers = 2: each process forwards over its own associations, so PACS "
            "(max_associations = 1) may get up to 2 at once") in capsys.readouterr().err


def test_check_refuses_a_bad_file_with_usage_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, MINIMAL + '[[rule]]\nforward = ["PACZ"]\n'
                                     '[[rule]]\nmatch = { Bogus = "1" }\nforward = ["PACS"]\n')
    assert cli(["route", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "unknown destination 'PACZ'" in err and "'Bogus' is not a DICOM keyword" in err


def test_route_without_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["route"]) == 2
    assert "route needs --config" in capsys.readouterr().err
