"""Short-syntax parsers: compose-go's cases (cases.json, NOTES.md) and cases from the spec."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.compose import syntax as sx
from shoal.model.errors import Invalid
from tests.corpus import CORPUS

CASES = json.loads((CORPUS / "compose-go" / "cases.json").read_text())


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [repr(c["input"]) for c in cases]


# --- ports -------------------------------------------------------------------------------------

PORT_CASES = CASES["port_short_syntax"]["cases"]


@pytest.mark.parametrize("case", PORT_CASES, ids=_ids(PORT_CASES))
def test_port_cases_json(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(Invalid) as err:
            sx.parse_port(case["input"])
        assert str(err.value) == case["error"]
    else:
        assert sx.parse_port(case["input"]) == case["expected"]


def _port(target: int, published: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"target": target, "protocol": "tcp", "mode": "ingress", **extra}
    if published is not None:
        out["published"] = published
    return out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # NOTES section 1: inferred, not quoted.
        ("127.0.0.1:8080:80/udp", [_port(80, "8080", host_ip="127.0.0.1", protocol="udp")]),
        # The spec's own examples (05-services.md, ports short syntax).
        ("3000", [_port(3000)]),
        ("3000-3002", [_port(3000), _port(3001), _port(3002)]),
        ("9090-9091:8080-8081", [_port(8080, "9090"), _port(8081, "9091")]),
        ("49100:22", [_port(22, "49100")]),
        ("8000-9000:80", [_port(80, "8000-9000")]),
        ("127.0.0.1:8001:8001", [_port(8001, "8001", host_ip="127.0.0.1")]),
        (
            "127.0.0.1:5000-5001:5000-5001",
            [_port(5000, "5000", host_ip="127.0.0.1"), _port(5001, "5001", host_ip="127.0.0.1")],
        ),
        ("::1:6000:6000", [_port(6000, "6000", host_ip="::1")]),
        ("[::1]:6001:6001", [_port(6001, "6001", host_ip="::1")]),
        ("6060:6060/udp", [_port(6060, "6060", protocol="udp")]),
        # Hand-written.
        ("127.0.0.1::80", [_port(80, host_ip="127.0.0.1")]),
        ("8080:80/TCP", [_port(80, "8080")]),
        ("5000:5000/sctp", [_port(5000, "5000", protocol="sctp")]),
        ("80/", [_port(80)]),
        ("080:08080", [_port(8080, "80")]),
        ("0.0.0.0:65535:65535", [_port(65535, "65535", host_ip="0.0.0.0")]),
        ("[2001:db8::1]:443:443", [_port(443, "443", host_ip="2001:db8::1")]),
        (8600, [_port(8600)]),
    ],
    ids=repr,
)
def test_port_short_syntax(spec: str | int, expected: list[dict[str, Any]]) -> None:
    assert sx.parse_port(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("80:", "No port specified: 80:<empty>"),
        ("65536", "Invalid containerPort: 65536"),
        ("80-70", "Invalid containerPort: 80-70"),
        ("80:8080-8081", "Invalid ranges specified for container and host Ports: 8080-8081 and 80"),
        (
            "80-82:8080-8081",
            "Invalid ranges specified for container and host Ports: 8080-8081 and 80-82",
        ),
        ("x:80", "Invalid hostPort: x"),
        ("localhost:80:80", "Invalid ip address: localhost"),
        ("[::1:80:80", "Invalid ip address: [::1"),
        ("80/TCPX", "Invalid proto: TCPX"),
        (" 80", "Invalid containerPort:  80"),
        (70000, "Invalid containerPort: 70000"),
    ],
)
def test_port_errors(spec: str | int, message: str) -> None:
    with pytest.raises(Invalid) as err:
        sx.parse_port(spec)
    assert str(err.value) == message


@pytest.mark.parametrize("spec", [True, 1.5, None, ["80"]])
def test_port_wrong_type(spec: Any) -> None:
    with pytest.raises(Invalid, match="invalid type"):
        sx.parse_port(spec)


def test_normalize_port_long_syntax() -> None:
    # NOTES section 2: published int → string, name/app_protocol kept, defaults filled.
    assert sx.normalize_port({"target": 80, "published": 8080, "name": "http"}) == {
        **_port(80, "8080"),
        "name": "http",
    }
    assert sx.normalize_port({"target": "53", "published": "10053", "protocol": "udp"}) == _port(
        53, "10053", protocol="udp"
    )
    long = {"target": 22, "published": "8083-9000", "mode": "host", "app_protocol": "ssh"}
    assert sx.normalize_port(long) == {**long, "protocol": "tcp"}
    assert sx.normalize_port({"target": 80, "published": ""}) == _port(80)
    assert sx.normalize_port({"target": 80, "x-foo": {"a": 1}})["x-foo"] == {"a": 1}


# --- volumes -----------------------------------------------------------------------------------

VOLUME_CASES = CASES["volume_short_syntax"]["cases"]


@pytest.mark.parametrize("case", VOLUME_CASES, ids=_ids(VOLUME_CASES))
def test_volume_cases_json(case: dict[str, Any]) -> None:
    if "error" in case or "error_contains" in case:
        with pytest.raises(Invalid) as err:
            sx.parse_volume(case["input"])
        if "error" in case:
            assert str(err.value) == case["error"]
        else:
            assert case["error_contains"] in str(err.value)
    elif case.get("expected_no_error"):
        sx.parse_volume(case["input"])
    else:
        assert sx.parse_volume(case["input"]) == case["expected"]


def _bind(source: str, target: str, **bind: Any) -> dict[str, Any]:
    return {
        "type": "bind",
        "source": source,
        "target": target,
        "bind": {"create_host_path": True, **bind},
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0:/foo", {"type": "volume", "source": "0", "target": "/foo", "volume": {}}),
        ("/data", {"type": "volume", "target": "/data", "volume": {}}),
        (
            "db-data:/etc/data",
            {"type": "volume", "source": "db-data", "target": "/etc/data", "volume": {}},
        ),
        (".:/code", _bind(".", "/code")),
        ("~:/home", _bind("~", "/home")),
        ("./app:/var/www/html/", _bind("./app", "/var/www/html")),
        ("/a:/b//c/../d", _bind("/a", "/b/d")),
        ("/src:/target:rw,z,shared", _bind("/src", "/target", selinux="z", propagation="shared")),
        ("/src:/target:rslave", _bind("/src", "/target", propagation="rslave")),
        ("/src:/target:ro,rw", _bind("/src", "/target")),
        ("/src:/target:rw,ro", {**_bind("/src", "/target"), "read_only": True}),
        (r"C:\data:/data", _bind(r"C:\data", "/data")),
        (r"\\.\pipe\docker:\\.\pipe\docker", _bind(r"\\.\pipe\docker", r"\\.\pipe\docker")),
        (
            "${TIME:-12:30:45}:/x",
            {"type": "volume", "source": "${TIME:-12:30:45}", "target": "/x", "volume": {}},
        ),
        ("/a:/b/${A:-${B:-c:d}}:ro", {**_bind("/a", "/b/${A:-${B:-c:d}}"), "read_only": True}),
        (
            "name:/target:nocopy,ro",
            {
                "type": "volume",
                "source": "name",
                "target": "/target",
                "volume": {"nocopy": True},
                "read_only": True,
            },
        ),
    ],
    ids=repr,
)
def test_volume_short_syntax(spec: str, expected: dict[str, Any]) -> None:
    assert sx.parse_volume(spec) == expected


# compose-go's TestParseVolumeSplitCases: does the spec have a source (more than one field)?
SPLIT_CASES = [
    ("C:\\foo:d:", True),
    ("/foo:/bar:ro", True),
    ("C:\\foo\\:/foo", True),
    ("d:\\", False),
    ("d:", False),
    ("d:\\path", False),
    ("d:\\path with space", False),
    ("d:\\pathandmode:rw", True),
    ("c:\\:d:\\", True),
    ("c:\\windows\\:d:", True),
    ("c:\\windows:d:\\s p a c e", True),
    ("c:\\windows:d:\\s p a c e:RW", True),
    ("c:\\program files:d:\\s p a c e i n h o s t d i r", True),
    ("0123456789name:d:", True),
    ("MiXeDcAsEnAmE:d:", True),
    ("name:D:", True),
    ("name:D::rW", True),
    ("name:D::RW", True),
    ("c:/:d:/forward/slashes/are/good/too", True),
    ("c:\\Windows", False),
    ("c:\\Program Files (x86)", False),
    (".", False),
    ("..\\", False),
    ("c:\\:..\\", True),
    ("c:\\:d:\\:xyzzy", True),
    ("/tmp/x/y:/foo/x/y", True),
]


@pytest.mark.parametrize(("spec", "has_source"), SPLIT_CASES)
def test_volume_split_cases(spec: str, has_source: bool) -> None:
    assert ("source" in sx.parse_volume(spec)) is has_source


def test_one_letter_volume_name_is_not_a_drive() -> None:
    # compose-go reads any `x:` as a Windows drive; a volume called `v` is legal (deviation).
    assert sx.parse_volume("v:/v") == {
        "type": "volume",
        "source": "v",
        "target": "/v",
        "volume": {},
    }
    assert sx.parse_volume("v:/v:ro")["source"] == "v"
    assert sx.parse_volume("C:/data:/data") == _bind("C:/data", "/data")
    assert sx.parse_volume("C:\\source\\foo:D:\\target:ro,rprivate") == {
        **_bind("C:\\source\\foo", "D:\\target", propagation="rprivate"),
        "read_only": True,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("vol:/b:ro:x", "invalid spec: vol:/b:ro:x: too many colons"),
        # A one-letter first field is a Windows drive (`C:`), as in compose-go.
        ("c:/x:/y:ro:z", "invalid spec: c:/x:/y:ro:z: too many colons"),
        ("/a:/b:ro:", "invalid spec: /a:/b:ro:: too many colons"),
        ("/a:", "invalid spec: /a:: empty section between colons"),
    ],
)
def test_volume_errors(spec: str, message: str) -> None:
    with pytest.raises(Invalid) as err:
        sx.parse_volume(spec)
    assert str(err.value) == message


# --- environment and key/value lists -----------------------------------------------------------

ENV = CASES["environment"]


@pytest.mark.parametrize("form", ["map_input", "list_input"])
def test_environment_cases_json(form: str) -> None:
    assert sx.parse_environment(ENV[form], ENV["host_env"].get) == ENV["expected"]


def test_environment_booleans() -> None:
    booleans = ENV["booleans"]
    assert sx.parse_environment(booleans["input"], {}.get) == booleans["expected"]


def test_environment_details() -> None:
    lookup = {"HOME": "/root", "EMPTY": ""}.get
    assert sx.parse_environment(["A=b=c", "B=", "HOME", "EMPTY", "NOPE"], lookup) == {
        "A": "b=c",
        "B": "",
        "HOME": "/root",
        "EMPTY": "",
        "NOPE": None,
    }
    assert sx.parse_environment({"N": 0, "F": 1.0, "B": False}, lookup) == {
        "N": "0",
        "F": "1.0",
        "B": "false",
    }
    assert sx.parse_environment(None, lookup) == {}


def test_environment_trailing_space() -> None:
    with pytest.raises(Invalid) as err:
        sx.parse_environment(["DEBUG = true"], {}.get)
    assert str(err.value) == "environment variable DEBUG  is declared with a trailing space"


def test_environment_bad_values() -> None:
    with pytest.raises(sx.BadValue) as err:
        sx.parse_environment({"FOO": ["1"]}, {}.get)
    assert err.value.rel == ("FOO",)
    assert err.value.tail == " must be a boolean, null, number or string"
    with pytest.raises(sx.BadValue, match="must be a mapping"):
        sx.parse_environment("FOO=1", {}.get)


def test_list_or_dict_labels() -> None:
    # Spec: a label without a value is the empty string; numbers and booleans become text.
    listed = [
        "com.example.description=Accounting webapp",
        "com.example.number=42",
        "com.example.empty",
    ]
    mapped = {
        "com.example.description": "Accounting webapp",
        "com.example.number": 42,
        "com.example.empty": None,
    }
    expected = {
        "com.example.description": "Accounting webapp",
        "com.example.number": "42",
        "com.example.empty": "",
    }
    assert sx.parse_list_or_dict(listed) == expected
    assert sx.parse_list_or_dict(mapped) == expected
    assert sx.parse_list_or_dict({"flag": True}) == {"flag": "true"}
    assert sx.parse_list_or_dict(["a:b"], sep=":") == {"a": "b"}


def test_list_or_dict_strict() -> None:
    assert sx.parse_list_or_dict(["base=service:base"], strict=True) == {"base": "service:base"}
    with pytest.raises(Invalid, match="invalid value foo, expected key=value"):
        sx.parse_list_or_dict(["foo"], strict=True)


def test_parse_args_keeps_null() -> None:
    assert sx.parse_args(["GIT_COMMIT", "A=1", "B="]) == {"GIT_COMMIT": None, "A": "1", "B": ""}
    assert sx.parse_args({"GIT_COMMIT": None, "N": 3}) == {"GIT_COMMIT": None, "N": "3"}


# --- extra_hosts -------------------------------------------------------------------------------

HOST_CASES = CASES["extra_hosts"]["cases"]


@pytest.mark.parametrize("case", HOST_CASES, ids=_ids(HOST_CASES))
def test_extra_hosts_cases_json(case: dict[str, Any]) -> None:
    assert sx.parse_extra_hosts(case["input"]) == case["expected"]


def test_extra_hosts_spec_forms() -> None:
    listed = [
        "somehost=162.242.195.82",
        "myhostv6=::1",
        "bracketed=[::1]",
        "old:::1",
        "m=0.0.0.1,0.0.0.2",
    ]
    assert sx.parse_extra_hosts(listed) == {
        "somehost": ["162.242.195.82"],
        "myhostv6": ["::1"],
        "bracketed": ["::1"],
        "old": ["::1"],
        "m": ["0.0.0.1", "0.0.0.2"],
    }
    assert sx.parse_extra_hosts({"myhost": ["0.0.0.1", "[::2]"]}) == {"myhost": ["0.0.0.1", "::2"]}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["nohost"], "invalid additional host, missing IP: nohost"),
        (["=1.2.3.4"], "bad host name ''"),
        ({"a:b": "1.2.3.4"}, "bad host name 'a:b'"),
    ],
)
def test_extra_hosts_errors(value: Any, message: str) -> None:
    with pytest.raises(Invalid) as err:
        sx.parse_extra_hosts(value)
    assert str(err.value) == message


# --- commands ----------------------------------------------------------------------------------

COMMAND_CASES = CASES["shell_command"]["cases"]


@pytest.mark.parametrize("case", COMMAND_CASES, ids=_ids(COMMAND_CASES))
def test_command_cases_json(case: dict[str, Any]) -> None:
    assert sx.split_command(case["input"]) == case["expected"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/bin/sh -c 'echo \"hello $$HOSTNAME\"'", ["/bin/sh", "-c", 'echo "hello $$HOSTNAME"']),
        ("", []),
        ("   ", []),
        ("''", [""]),
        ('a""b', ["ab"]),
        ("a\\ b\tc\nd", ["a b", "c", "d"]),
        ('"a \\"b\\" \\x"', ['a "b" \\x']),
        ("'a \\b'", ["a \\b"]),
        ("one \\\ntwo", ["one", "two"]),
        ("sh -c echo a && echo b", ["sh", "-c", "echo", "a", "&&", "echo", "b"]),
        (["bundle", "exec", 3000, True], ["bundle", "exec", "3000", "true"]),
        ([], []),
    ],
    ids=repr,
)
def test_split_command(command: Any, expected: list[str]) -> None:
    assert sx.split_command(command) == expected


@pytest.mark.parametrize("command", ["'open", '"open', "trailing\\", 'a "b\\"'])
def test_split_command_errors(command: str) -> None:
    with pytest.raises(Invalid, match="invalid command line string"):
        sx.split_command(command)


# --- one-line short forms ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/dev/source:/dev/target:permissions", ("/dev/source", "/dev/target", "permissions")),
        ("/dev/single", ("/dev/single", "/dev/single", "rwm")),
        ("/dev/sda:/dev/xvda:rwm", ("/dev/sda", "/dev/xvda", "rwm")),
        ("/dev/ttyUSB0:/dev/ttyUSB0", ("/dev/ttyUSB0", "/dev/ttyUSB0", "rwm")),
        ("vendor1.com/device=gpu", ("vendor1.com/device=gpu", "vendor1.com/device=gpu", "rwm")),
        ("/dev/sda:rw", ("/dev/sda", "/dev/sda", "rw")),
    ],
)
def test_devices(spec: str, expected: tuple[str, str, str]) -> None:
    source, target, permissions = expected
    assert sx.parse_device(spec) == {"source": source, "target": target, "permissions": permissions}


def test_device_errors_and_long_form() -> None:
    with pytest.raises(Invalid, match="confusing device mapping, please use long syntax: a:b:c:d"):
        sx.parse_device("a:b:c:d")
    assert sx.normalize_device({"source": "/dev/a"}) == {
        "source": "/dev/a",
        "target": "/dev/a",
        "permissions": "rwm",
    }


def test_ulimits() -> None:
    assert sx.parse_ulimit(65535) == 65535
    assert sx.parse_ulimit("-1") == -1
    assert sx.parse_ulimit({"soft": "20000", "hard": 40000}) == {"soft": 20000, "hard": 40000}
    with pytest.raises(sx.BadValue, match="soft must be an integer"):
        sx.parse_ulimit({"soft": "lots", "hard": 1})


def test_gpus_and_device_requests() -> None:
    assert sx.parse_gpus("all") == [{"count": "all"}]
    assert sx.parse_gpus([{"driver": "nvidia"}, {"driver": "3dfx", "device_ids": ["voodoo2"]}]) == [
        {"driver": "nvidia", "count": "all"},
        {"driver": "3dfx", "device_ids": ["voodoo2"]},
    ]
    assert sx.normalize_device_request({"capabilities": ["gpu"], "count": 2}) == {
        "capabilities": ["gpu"],
        "count": 2,
    }
    with pytest.raises(sx.BadValue) as err:
        sx.parse_gpus([{"count": 1, "device_ids": ["a"]}])
    assert err.value.rel == (0,)
    assert err.value.tail == ': "count" and "device_ids" attributes are exclusive'


def test_mounts_dependencies_and_references() -> None:
    assert sx.parse_file_mount("my_config") == {"source": "my_config"}
    assert sx.parse_depends_on(["db", "redis"]) == {
        "db": {"condition": "service_started", "required": True},
        "redis": {"condition": "service_started", "required": True},
    }
    assert sx.parse_depends_on(
        {"db": {"condition": "service_healthy", "restart": True}, "r": None}
    ) == {
        "db": {"condition": "service_healthy", "restart": True, "required": True},
        "r": {"condition": "service_started", "required": True},
    }
    assert sx.parse_depends_on({"db": {"required": "false"}})["db"]["required"] is False
    assert sx.parse_name_list(["front", "back"]) == {"front": None, "back": None}
    assert sx.parse_build(".") == {"context": "."}
    assert sx.parse_build({"dockerfile": "Other"}) == {"dockerfile": "Other"}
    assert sx.parse_extends("base") == {"service": "base"}
    assert sx.parse_include("../other/compose.yaml") == {"path": ["../other/compose.yaml"]}
    assert sx.parse_include({"path": "a.yaml", "env_file": "a.env"}) == {
        "path": ["a.yaml"],
        "env_file": ["a.env"],
    }


def test_env_file_forms() -> None:
    assert sx.parse_env_file(".env") == [{"path": ".env", "required": True}]
    assert sx.parse_env_file(
        ["./a.env", {"path": "./b.env", "required": False, "format": "raw"}]
    ) == [
        {"path": "./a.env", "required": True},
        {"path": "./b.env", "required": False, "format": "raw"},
    ]
    assert sx.parse_env_file([{"path": "x", "required": "false"}]) == [
        {"path": "x", "required": False}
    ]


def test_string_or_list_forms() -> None:
    assert sx.parse_string_or_list("8.8.8.8") == ["8.8.8.8"]
    assert sx.parse_string_or_list(["8.8.8.8", "9.9.9.9"]) == ["8.8.8.8", "9.9.9.9"]
    assert sx.parse_string_or_list("") == []  # `dns: ${UNSET}` means no DNS server
    assert sx.parse_expose(["3000", 8000, "8080-8085/tcp"]) == ["3000", "8000", "8080-8085/tcp"]
    assert sx.parse_healthcheck_test('echo "hello world"') == ["CMD-SHELL", 'echo "hello world"']
    assert sx.parse_healthcheck_test(["CMD", "curl", "-f", "http://localhost"]) == [
        "CMD",
        "curl",
        "-f",
        "http://localhost",
    ]
    assert sx.parse_options({"baz": 1, "foo": "bar", "none": None}) == {
        "baz": "1",
        "foo": "bar",
        "none": "",
    }


def test_ssh() -> None:
    assert sx.parse_ssh(["default", "myproject=~/.ssh/myproject.pem"]) == {
        "default": None,
        "myproject": "~/.ssh/myproject.pem",
    }
    with pytest.raises(Invalid, match='invalid ssh key "mykey"'):
        sx.parse_ssh(["mykey"])


# --- robustness --------------------------------------------------------------------------------


SPEC_LIKE = st.text(
    alphabet=st.sampled_from("0123456789:-/[]. abtcpudsx${}~,rowzZ\\C"), max_size=30
)


@settings(max_examples=500, deadline=None)
@given(SPEC_LIKE | st.text(max_size=40))
def test_parsers_on_any_text(text: str) -> None:
    for parse in (sx.parse_port, sx.parse_volume, sx.split_command, sx.parse_device):
        with contextlib.suppress(Invalid):
            parse(text)
