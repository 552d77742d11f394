"""`canonicalize`: every short syntax of a whole document rewritten to the long syntax."""

from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.compose.canonical import canonicalize
from shoal.model.errors import ComposeError
from tests.corpus import CORPUS

CASES = json.loads((CORPUS / "compose-go" / "cases.json").read_text())
CORPUS_FILES = sorted((CORPUS / "awesome").glob("*.yaml")) + sorted(
    (CORPUS / "conformance" / "tests").glob("*/compose.yaml")
)
HOST_ENV = {"MEU": "Shadoks", "HOME": "/root"}


def canon(doc: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return canonicalize(doc, lookup=HOST_ENV.get, **kwargs)


def service(spec: dict[str, Any]) -> dict[str, Any]:
    """Canonicalise one service `web` and return it."""
    result: dict[str, Any] = canon({"services": {"web": spec}})["services"]["web"]
    return result


def error(doc: dict[str, Any]) -> ComposeError:
    with pytest.raises(ComposeError) as err:
        canon(doc)
    return err.value


# --- ports -------------------------------------------------------------------------------------


def test_port_list_in_file() -> None:
    # NOTES section 2: exactly these 10 entries, in this order.
    case = CASES["port_list_in_file"]
    assert service({"ports": case["input"]})["ports"] == case["expected"]


def test_ports_are_deduplicated() -> None:
    ports = service({"ports": ["80:80", "80:80/tcp", {"target": 80, "published": 80}, "81:80"]})
    assert ports["ports"] == [
        {"target": 80, "published": "80", "protocol": "tcp", "mode": "ingress"},
        {"target": 80, "published": "81", "protocol": "tcp", "mode": "ingress"},
    ]


def test_port_error_names_entry() -> None:
    err = error({"services": {"web": {"ports": ["80:80", "127.0.1:8080:80"]}}})
    assert err.message == "Invalid ip address: 127.0.1"
    assert err.path == ("services", "web", "ports", 1)


# --- one service with every short syntax ---------------------------------------------------------

SHORT = {
    "annotations": ["com.example.foo=bar"],
    "labels": ["com.example.description=Accounting webapp", "com.example.empty"],
    "sysctls": ["net.core.somaxconn=1024", "testing.one.two"],
    "storage_opt": {"size": "20G", "n": 1},
    "build": ".",
    "command": "bundle exec thin -p 3000",
    "entrypoint": "/code/entrypoint.sh -p 3000",
    "configs": ["my_config", {"source": "other", "target": "/other"}],
    "secrets": ["server-certificate"],
    "depends_on": ["db", "redis"],
    "devices": ["/dev/ttyUSB0:/dev/ttyUSB0", "/dev/sda:/dev/xvda:rwm", {"source": "/dev/x"}],
    "dns": "8.8.8.8",
    "dns_search": "example.com",
    "tmpfs": "/run",
    "label_file": "./app.labels",
    "env_file": ".env",
    "environment": ["RACK_ENV=development", "SHOW=true", "MEU", "USER_INPUT"],
    "expose": ["3000", 8000],
    "extends": "base",
    "extra_hosts": ["somehost=162.242.195.82", "myhostv6=::1"],
    "gpus": "all",
    "group_add": ["mail", 0],
    "healthcheck": {"test": "curl -f https://localhost || exit 1", "interval": "1m30s"},
    "logging": {"driver": "syslog", "options": {"syslog-address": "tcp://192.168.0.42:123"}},
    "models": ["my_model"],
    "networks": ["front-tier", "back-tier"],
    "ports": ["3000"],
    "post_start": [{"command": "echo start", "environment": ["FOO=BAR"]}],
    "pre_stop": [{"command": ["echo", "stop"], "environment": {"FOO": "BAR"}}],
    "pre_start": [{"command": "sh -c 'chown -R 1000:1000 /data'", "image": "busybox"}],
    "ulimits": {"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}},
    "volumes": ["db-data:/etc/data", "./app:/var/www/html/:ro"],
    "x-custom": ["left", "alone"],
    "image": "example/webapp",
    "mem_limit": "512m",
    "stop_grace_period": "1m30s",
}

LONG = {
    "annotations": {"com.example.foo": "bar"},
    "labels": {"com.example.description": "Accounting webapp", "com.example.empty": ""},
    "sysctls": {"net.core.somaxconn": "1024", "testing.one.two": ""},
    "storage_opt": {"size": "20G", "n": "1"},
    "build": {"context": "."},
    "command": ["bundle", "exec", "thin", "-p", "3000"],
    "entrypoint": ["/code/entrypoint.sh", "-p", "3000"],
    "configs": [{"source": "my_config"}, {"source": "other", "target": "/other"}],
    "secrets": [{"source": "server-certificate"}],
    "depends_on": {
        "db": {"condition": "service_started", "required": True},
        "redis": {"condition": "service_started", "required": True},
    },
    "devices": [
        {"source": "/dev/ttyUSB0", "target": "/dev/ttyUSB0", "permissions": "rwm"},
        {"source": "/dev/sda", "target": "/dev/xvda", "permissions": "rwm"},
        {"source": "/dev/x", "target": "/dev/x", "permissions": "rwm"},
    ],
    "dns": ["8.8.8.8"],
    "dns_search": ["example.com"],
    "tmpfs": ["/run"],
    "label_file": ["./app.labels"],
    "env_file": [{"path": ".env", "required": True}],
    "environment": {
        "RACK_ENV": "development",
        "SHOW": "true",
        "MEU": "Shadoks",
        "USER_INPUT": None,
    },
    "expose": ["3000", "8000"],
    "extends": {"service": "base"},
    "extra_hosts": {"somehost": ["162.242.195.82"], "myhostv6": ["::1"]},
    "gpus": [{"count": "all"}],
    "group_add": ["mail", "0"],
    "healthcheck": {
        "test": ["CMD-SHELL", "curl -f https://localhost || exit 1"],
        "interval": "1m30s",
    },
    "logging": {"driver": "syslog", "options": {"syslog-address": "tcp://192.168.0.42:123"}},
    "models": {"my_model": None},
    "networks": {"front-tier": None, "back-tier": None},
    "ports": [{"target": 3000, "protocol": "tcp", "mode": "ingress"}],
    "post_start": [{"command": ["echo", "start"], "environment": {"FOO": "BAR"}}],
    "pre_stop": [{"command": ["echo", "stop"], "environment": {"FOO": "BAR"}}],
    "pre_start": [{"command": ["sh", "-c", "chown -R 1000:1000 /data"], "image": "busybox"}],
    "ulimits": {"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}},
    "volumes": [
        {"type": "volume", "source": "db-data", "target": "/etc/data", "volume": {}},
        {
            "type": "bind",
            "source": "./app",
            "target": "/var/www/html",
            "read_only": True,
            "bind": {"create_host_path": True},
        },
    ],
    "x-custom": ["left", "alone"],
    "image": "example/webapp",
    "mem_limit": "512m",
    "stop_grace_period": "1m30s",
}


@pytest.mark.parametrize("key", sorted(SHORT))
def test_service_key_to_long_form(key: str) -> None:
    assert service({key: SHORT[key]})[key] == LONG[key]


def test_whole_service_and_idempotence() -> None:
    once = service(SHORT)
    assert once == LONG
    assert service(once) == LONG


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # '' and [] both override the image's command with nothing; null keeps the image's.
        ({"command": ""}, {"command": []}),
        ({"command": []}, {"command": []}),
        ({"command": None}, {"command": None}),
        ({"entrypoint": ""}, {"entrypoint": []}),
        ({"dns": ""}, {"dns": []}),
        (
            {"depends_on": {"db": {"condition": "service_healthy", "restart": True}}},
            {
                "depends_on": {
                    "db": {"condition": "service_healthy", "restart": True, "required": True}
                }
            },
        ),
        (
            {"depends_on": {"db": {"required": False}}},
            {"depends_on": {"db": {"condition": "service_started", "required": False}}},
        ),
        (
            {"environment": {"FOO": "1", "BAR": 2, "GA": 2.5, "BU": "", "ZO": None, "MEU": None}},
            {
                "environment": {
                    "FOO": "1",
                    "BAR": "2",
                    "GA": "2.5",
                    "BU": "",
                    "ZO": None,
                    "MEU": "Shadoks",
                }
            },
        ),
        (
            {"environment": {"FOO": True, "BAR": False}},
            {"environment": {"FOO": "true", "BAR": "false"}},
        ),
        (
            {"extra_hosts": {"zulu": "162.242.195.82", "alpha": ["50.31.209.229"]}},
            {"extra_hosts": {"zulu": ["162.242.195.82"], "alpha": ["50.31.209.229"]}},
        ),
        (
            {"env_file": ["./a.env", {"path": "./b.env", "required": False}]},
            {
                "env_file": [
                    {"path": "./a.env", "required": True},
                    {"path": "./b.env", "required": False},
                ]
            },
        ),
        (
            {"networks": {"some": {"aliases": ["a1"], "driver_opts": {"baz": 1}}, "other": None}},
            {"networks": {"some": {"aliases": ["a1"], "driver_opts": {"baz": "1"}}, "other": None}},
        ),
        ({"models": {"m": {"endpoint_var": "URL"}}}, {"models": {"m": {"endpoint_var": "URL"}}}),
        (
            {"volumes": [{"type": "bind", "source": "./a", "target": "/a/"}]},
            {
                "volumes": [
                    {
                        "type": "bind",
                        "source": "./a",
                        "target": "/a",
                        "bind": {"create_host_path": True},
                    }
                ]
            },
        ),
        (
            {
                "volumes": [
                    {
                        "type": "bind",
                        "source": "./a",
                        "target": "/a",
                        "bind": {"create_host_path": False},
                    }
                ]
            },
            {
                "volumes": [
                    {
                        "type": "bind",
                        "source": "./a",
                        "target": "/a",
                        "bind": {"create_host_path": False},
                    }
                ]
            },
        ),
        (
            {"volumes": [{"type": "tmpfs", "target": "/t", "tmpfs": {"size": "1kb"}}]},
            {"volumes": [{"type": "tmpfs", "target": "/t", "tmpfs": {"size": "1kb"}}]},
        ),
        (
            {
                "gpus": [
                    {"driver": "nvidia"},
                    {"driver": "3dfx", "device_ids": ["voodoo2"], "options": ["a=1"]},
                ]
            },
            {
                "gpus": [
                    {"driver": "nvidia", "count": "all"},
                    {"driver": "3dfx", "device_ids": ["voodoo2"], "options": {"a": "1"}},
                ]
            },
        ),
        (
            {
                "deploy": {
                    "labels": ["FOO=BAR"],
                    "resources": {
                        "reservations": {
                            "devices": [
                                {
                                    "driver": "nvidia",
                                    "capabilities": ["gpu"],
                                    "options": {"q_bits": 42},
                                }
                            ]
                        }
                    },
                }
            },
            {
                "deploy": {
                    "labels": {"FOO": "BAR"},
                    "resources": {
                        "reservations": {
                            "devices": [
                                {
                                    "driver": "nvidia",
                                    "capabilities": ["gpu"],
                                    "count": "all",
                                    "options": {"q_bits": "42"},
                                }
                            ]
                        }
                    },
                }
            },
        ),
        (
            {
                "build": {
                    "context": "./dir",
                    "args": ["GIT_COMMIT", "A=1"],
                    "labels": ["FOO=BAR"],
                    "additional_contexts": ["resources=/path"],
                    "ssh": ["default"],
                    "secrets": ["s1"],
                    "extra_hosts": ["h=1.2.3.4"],
                    "ulimits": {"nproc": "10"},
                }
            },
            {
                "build": {
                    "context": "./dir",
                    "args": {"GIT_COMMIT": None, "A": "1"},
                    "labels": {"FOO": "BAR"},
                    "additional_contexts": {"resources": "/path"},
                    "ssh": {"default": None},
                    "secrets": [{"source": "s1"}],
                    "extra_hosts": {"h": ["1.2.3.4"]},
                    "ulimits": {"nproc": 10},
                }
            },
        ),
        (
            {
                "develop": {
                    "watch": [
                        {"path": ["./a", "./b"], "action": "sync", "target": "/app"},
                        {
                            "path": "./c",
                            "action": "sync+exec",
                            "ignore": "node_modules/",
                            "exec": {"command": "kill -HUP 1"},
                        },
                    ]
                }
            },
            {
                "develop": {
                    "watch": [
                        {"path": "./a", "action": "sync", "target": "/app"},
                        {"path": "./b", "action": "sync", "target": "/app"},
                        {
                            "path": "./c",
                            "action": "sync+exec",
                            "ignore": ["node_modules/"],
                            "exec": {"command": ["kill", "-HUP", "1"]},
                        },
                    ]
                }
            },
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else repr(v),
)
def test_service_forms(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    assert service(spec) == expected


def test_wrong_types_are_left_for_the_model() -> None:
    odd = {"ports": "80:80", "environment": "FOO=1", "volumes": {"a": 1}, "extends": 3}
    assert service(odd) == odd


@pytest.mark.parametrize(
    ("spec", "message", "path"),
    [
        (
            {"environment": {"FOO": ["1"]}},
            "services.web.environment.FOO must be a boolean, null, number or string",
            ("services", "web", "environment", "FOO"),
        ),
        (
            {"environment": ["DEBUG = true"]},
            "environment variable DEBUG  is declared with a trailing space",
            ("services", "web", "environment"),
        ),
        (
            {"volumes": ["/a:/b", "/foo:/foo:ro:foo"]},
            "invalid spec: /foo:/foo:ro:foo: too many colons",
            ("services", "web", "volumes", 1),
        ),
        (
            {"gpus": [{"count": 1, "device_ids": ["a"]}]},
            'services.web.gpus[0]: "count" and "device_ids" attributes are exclusive',
            ("services", "web", "gpus", 0),
        ),
        (
            {"devices": ["a:b:c:d"]},
            "confusing device mapping, please use long syntax: a:b:c:d",
            ("services", "web", "devices", 0),
        ),
        (
            {"command": "echo 'unterminated"},
            "invalid command line string",
            ("services", "web", "command"),
        ),
        (
            {"ulimits": {"nofile": {"soft": "x", "hard": 1}}},
            "services.web.ulimits.nofile.soft must be an integer",
            ("services", "web", "ulimits", "nofile", "soft"),
        ),
    ],
)
def test_errors_carry_the_key_path(
    spec: dict[str, Any], message: str, path: tuple[Any, ...]
) -> None:
    err = error({"services": {"web": spec}})
    assert err.message == message
    assert err.path == path


# --- top-level resources -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["networks", "volumes", "secrets", "configs"])
def test_external_name_legacy_form(kind: str) -> None:
    warnings: list[tuple[str, tuple[Any, ...]]] = []
    doc = {kind: {"foo": {"external": {"name": "oops"}}}}
    result = canon(doc, warn=lambda message, path: warnings.append((message, path)))
    assert result[kind]["foo"] == {"name": "oops", "external": True}
    assert warnings == [
        (
            f"{kind}.foo: external.name is deprecated. Please set name and external: true",
            (kind, "foo"),
        )
    ]


@pytest.mark.parametrize("kind", ["networks", "volumes", "secrets", "configs"])
def test_external_name_conflict(kind: str) -> None:
    err = error({kind: {"external_volume": {"name": "a", "external": {"name": "b"}}}})
    assert err.message == f"{kind}.external_volume: name and external.name conflict; only use name"
    assert err.path == (kind, "external_volume")
    # The same name twice is no conflict.
    same = canon({kind: {"v": {"name": "a", "external": {"name": "a"}}}}, warn=lambda m, p: None)
    assert same[kind]["v"] == {"name": "a", "external": True}


@pytest.mark.parametrize("key", ["driver", "driver_opts", "labels"])
def test_external_conflicting_parameters(key: str) -> None:
    value = {"driver": "foobar", "driver_opts": {"beep": "boop"}, "labels": ["beep=boop"]}[key]
    err = error({"volumes": {"external_volume": {"external": True, key: value}}})
    assert (
        err.message
        == f'volumes.external_volume: conflicting parameters "external" and "{key}" specified'
    )
    assert err.path == ("volumes", "external_volume")


def test_external_allows_name_and_extensions() -> None:
    doc = {
        "volumes": {"v": {"name": "this-is-volume3", "external": True, "x-bar": "baz"}},
        "networks": {"n": {"external": "true"}, "m": {"external": False, "driver": "overlay"}},
    }
    result = canon(doc)
    assert result["volumes"]["v"] == doc["volumes"]["v"]
    assert result["networks"]["n"] == {"external": True}
    assert result["networks"]["m"] == {"external": False, "driver": "overlay"}


def test_resource_mappings() -> None:
    doc = {
        "networks": {
            "other-network": {
                "driver": "overlay",
                "driver_opts": {"foo": "bar", "baz": 1},
                "ipam": {
                    "driver": "overlay",
                    "options": {"x": 0},
                    "config": [{"subnet": "172.28.0.0/16"}],
                },
                "labels": ["foo=bar"],
            },
            "some-network": None,
        },
        "volumes": {"v": {"labels": {"n": 1}}, "empty": None},
        "secrets": {"s": {"file": "./secret", "labels": ["a=b"]}},
        "configs": {"c": {"content": "x", "labels": {"a": None}}},
    }
    result = canon(doc)
    assert result["networks"]["other-network"] == {
        "driver": "overlay",
        "driver_opts": {"foo": "bar", "baz": "1"},
        "ipam": {
            "driver": "overlay",
            "options": {"x": "0"},
            "config": [{"subnet": "172.28.0.0/16"}],
        },
        "labels": {"foo": "bar"},
    }
    assert result["networks"]["some-network"] is None
    assert result["volumes"] == {"v": {"labels": {"n": "1"}}, "empty": None}
    assert result["secrets"]["s"]["labels"] == {"a": "b"}
    assert result["configs"]["c"]["labels"] == {"a": ""}


def test_include_and_top_level_extensions() -> None:
    extension = {"anything": ["goes", {"here": 1}]}
    doc = {
        "name": "proj",
        "include": ["../commons/compose.yaml", {"path": "a.yaml", "env_file": "a.env"}],
        "x-common": extension,
        "models": {"m": {"model": "ai/model"}},
    }
    result = canon(doc)
    assert result["include"] == [
        {"path": ["../commons/compose.yaml"]},
        {"path": ["a.yaml"], "env_file": ["a.env"]},
    ]
    assert result["x-common"] is extension
    assert result["models"] is doc["models"]
    assert result["name"] == "proj"


def test_service_named_like_an_extension_is_still_a_service() -> None:
    result = canon({"services": {"x-foo": {"depends_on": ["test"]}}})
    assert result["services"]["x-foo"]["depends_on"] == {
        "test": {"condition": "service_started", "required": True}
    }


# --- the corpus --------------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_file(path: Path) -> None:
    doc = _load(path)
    before = copy.deepcopy(doc)
    result = canon(doc)
    assert doc == before, "the input must not be modified"
    assert canon(result) == result, "canonical form must be stable"
    for name, svc in result.get("services", {}).items():
        for port in svc.get("ports", []):
            assert isinstance(port, dict) and isinstance(port["target"], int), (name, port)
            assert isinstance(port.get("published", ""), str)
        for volume in svc.get("volumes", []):
            assert isinstance(volume, dict) and volume["type"] in ("bind", "volume"), (name, volume)
        assert isinstance(svc.get("environment", {}), dict)
        assert isinstance(svc.get("networks", {}), dict)
        assert isinstance(svc.get("depends_on", {}), dict)
        for key in ("command", "entrypoint"):
            assert isinstance(svc.get(key, []), list)
        if "build" in svc:
            assert isinstance(svc["build"], dict) and "context" in svc["build"]


def test_corpus_is_fast() -> None:
    docs = [_load(p) for p in CORPUS_FILES]
    start = time.perf_counter()
    for doc in docs:
        canon(doc)
    # The whole pipeline has 0.3 s for the corpus; this step should take a small part of it.
    assert time.perf_counter() - start < 0.05


def test_unchanged_values_are_shared_not_copied() -> None:
    blkio = {"weight": 300, "device_read_bps": [{"path": "/dev/sdb", "rate": "12mb"}]}
    doc = {"services": {"web": {"image": "x", "blkio_config": blkio, "deploy": {"replicas": 2}}}}
    result = canon(doc)
    assert result["services"]["web"]["blkio_config"] is blkio
    assert result["services"]["web"]["deploy"] is doc["services"]["web"]["deploy"]


ODD_VALUES: list[Any] = [None, True, 7, 2.5, "", "x:y:z", "[", [], {}, [None], [{}], {"a": []}]


def _mutate(node: Any, rng: random.Random) -> None:
    keys = list(node) if isinstance(node, dict) else range(len(node))
    for key in keys:
        if rng.random() < 0.15:
            node[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif isinstance(node[key], dict | list):
            _mutate(node[key], rng)


def test_mutated_documents_fail_only_with_compose_errors() -> None:
    rng = random.Random(7)
    docs = [_load(p) for p in CORPUS_FILES]
    for _ in range(500):
        doc = copy.deepcopy(rng.choice(docs))
        _mutate(doc, rng)
        try:
            canon(doc, warn=lambda message, path: None)
        except ComposeError as exc:
            assert exc.message
