"""Merging Compose documents: compose-go's fixtures, the spec's examples, and properties.

compose-go emits every merged key/value field (environment, labels, ...) as a `K=V` list and
every merged `networks`/`models` as a mapping; shoal keeps a list only when both sides were lists.
Fixture results are therefore compared modulo representation (`_canon`); the hand-written cases
compare exact values.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.compose.merge import enforce_unicity, merge_documents, merge_service, strip_markers
from shoal.compose.tags import Override, Reset
from shoal.compose.yamlsrc import load_documents
from shoal.model.errors import ComposeError
from tests.corpus import CORPUS

INLINE = CORPUS / "compose-go" / "inline"
OVERRIDE = INLINE / "override"


def _load(path: Path) -> dict[str, Any]:
    data = load_documents(path.read_text(), path.name)[0].data
    assert isinstance(data, dict)
    return data


def _yaml(text: str) -> dict[str, Any]:
    data = load_documents(text, "compose.yaml")[0].data
    assert isinstance(data, dict)
    return data


def _merge(*texts: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in texts:
        out = merge_documents(out, _yaml(text))
    return out


# --- comparison modulo representation ----------------------------------------------------------

_KV = ("environment", "labels", "annotations", "sysctls")
_BUILD_KV = ("args", "labels", "additional_contexts")


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kv(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _text(v) for k, v in value.items()}
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            key, sep, text = str(item).partition("=")
            out[key] = text if sep else None
        return out
    return value


def _names(value: Any) -> Any:
    return dict.fromkeys(value) if isinstance(value, list) else value


def _hosts(value: Any) -> Any:
    if isinstance(value, dict):
        value = [
            f"{h}={ip}"
            for h, ips in value.items()
            for ip in (ips if isinstance(ips, list) else [ips])
        ]
    return sorted(value) if isinstance(value, list) else value


def _canon_service(service: Any) -> Any:
    if not isinstance(service, dict):
        return service
    out = dict(service)
    for key in _KV:
        if key in out:
            out[key] = _kv(out[key])
    for key in ("networks", "models"):
        if key in out:
            out[key] = _names(out[key])
    if "extra_hosts" in out:
        out["extra_hosts"] = _hosts(out["extra_hosts"])
    if isinstance(out.get("build"), dict):
        build = dict(out["build"])
        for key in _BUILD_KV:
            if key in build:
                build[key] = _kv(build[key])
        if "extra_hosts" in build:
            build["extra_hosts"] = _hosts(build["extra_hosts"])
        out["build"] = build
    if isinstance(out.get("deploy"), dict) and "labels" in out["deploy"]:
        out["deploy"] = {**out["deploy"], "labels": _kv(out["deploy"]["labels"])}
    return out


def _canon(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    if isinstance(out.get("services"), dict):
        out["services"] = {n: _canon_service(s) for n, s in out["services"].items()}
    for top in ("networks", "volumes"):
        if isinstance(out.get(top), dict):
            out[top] = {
                n: {**v, "labels": _kv(v["labels"])} if isinstance(v, dict) and "labels" in v else v
                for n, v in out[top].items()
            }
    return out


# --- compose-go override fixtures --------------------------------------------------------------


def _triples() -> list[Any]:
    """Every `merge_*` test as (base, override, expected) file triples."""
    cases = []
    for directory in sorted(OVERRIDE.glob("merge*")):
        tests: dict[str, list[Path]] = {}
        for path in sorted(directory.glob("*.yaml")):
            tests.setdefault(path.name.split("__")[0], []).append(path)
        for name, paths in tests.items():
            if len(paths) == 3:
                cases.append(pytest.param(*paths, id=f"{directory.name}/{name}"))
    return cases


# Go tests with more than three documents: (base, override, expected) by document number.
_SUBTESTS = [
    ("merge_env_file/TestMergeEnvFilesMixed", 2, 1, 3),  # SequenceThenString
    ("merge_env_file/TestMergeEnvFilesMixed", 1, 2, 4),  # StringThenSequence
    ("merge_env_file/TestMergeEnvFilesMixed", 1, 5, 6),  # unicity between string and mapping
    ("merge_tmpfs/TestMergeTmpfsMixed", 2, 1, 3),
    ("merge_tmpfs/TestMergeTmpfsMixed", 1, 2, 4),
    ("merge_mem/TestMemLimitMixed", 2, 1, 3),
    ("merge_mem/TestMemLimitMixed", 1, 2, 4),
]


def test_every_override_fixture_is_covered() -> None:
    covered = {c.id for c in _triples()} | {s[0] for s in _SUBTESTS}
    names = {
        f"{p.parent.name}/{p.name.split('__')[0]}"
        for p in OVERRIDE.glob("merge*/*.yaml")
        if "%s" not in p.read_text()
    }
    assert names <= covered
    assert len(covered) >= 60


@pytest.mark.parametrize(("base", "override", "expected"), _triples())
def test_compose_go_merge_fixture(base: Path, override: Path, expected: Path) -> None:
    got = merge_documents(_load(base), _load(override))
    assert _canon(got) == _canon(_load(expected))


@pytest.mark.parametrize(
    ("name", "base", "override", "expected"),
    _SUBTESTS,
    ids=[f"{s[0]}:{s[1]}+{s[2]}" for s in _SUBTESTS],
)
def test_compose_go_merge_subtests(name: str, base: int, override: int, expected: int) -> None:
    def doc(n: int) -> dict[str, Any]:
        return _load(OVERRIDE / f"{name}__{n}.yaml")

    assert _canon(merge_documents(doc(base), doc(override))) == _canon(doc(expected))


def test_merged_environment_keeps_the_list_form_when_both_sides_are_lists() -> None:
    got = merge_documents(
        _load(OVERRIDE / "merge_environment/Test_mergeYamlEnvironmentSequence__1.yaml"),
        _load(OVERRIDE / "merge_environment/Test_mergeYamlEnvironmentSequence__2.yaml"),
    )
    assert got["services"]["test"]["environment"] == ["FOO=BAR", "QIX=ZOT", "EMPTY=", "NIL"]


def test_merged_environment_of_mixed_forms_is_a_mapping() -> None:
    got = merge_documents(
        _load(OVERRIDE / "merge_environment/Test_mergeYamlEnvironmentMapping__1.yaml"),
        _load(OVERRIDE / "merge_environment/Test_mergeYamlEnvironmentMapping__2.yaml"),
    )
    assert got["services"]["test"]["environment"] == {
        "FOO": "BAR",
        "EMPTY": "",
        "NIL": None,
        "QIX": "ZOT",
    }


@pytest.mark.parametrize(
    "name",
    [
        "Test_EnvironmentUnicity",
        "Test_VolumeUnicity",
        "Test_PortsShortUnicity",
        "Test_PortsLongtUnicity",
    ],
)
def test_compose_go_unicity_fixture(name: str) -> None:
    given_doc = _load(OVERRIDE / "uncity" / f"{name}__1.yaml")
    expected = _load(OVERRIDE / "uncity" / f"{name}__2.yaml")
    got = {
        **given_doc,
        "services": {n: enforce_unicity(s) for n, s in given_doc["services"].items()},
    }
    assert got == expected


# --- compose-go loader fixtures for !reset / !override -----------------------------------------

# Skipped from loader/reset: TestAliasBomb*, TestAliasNodePreservation, TestResetCycle*,
# TestMergeKeyAlias* and loader/merge_reset/Test_DuplicateReset test the YAML reader (aliases,
# merge keys, duplicate keys), not merging: tests/compose/test_yamlsrc.py covers them.


def _pair(directory: str, name: str) -> dict[str, Any]:
    return merge_documents(
        _load(INLINE / "loader" / directory / f"{name}__1.yaml"),
        _load(INLINE / "loader" / directory / f"{name}__2.yaml"),
    )


def test_load_with_reset() -> None:
    got = _pair("merge_reset", "Test_LoadWithReset")
    assert got["services"]["foo"] == {"image": "foo", "environment": {}}
    assert got["name"] == "test"


def test_reset_removes_a_network() -> None:
    assert "test" not in _pair("reset", "TestResetRemove")["networks"]


def test_override_replaces_a_network() -> None:
    assert _pair("reset", "TestOverrideReplace")["networks"] == {"test": {}}


def test_override_through_a_shared_alias() -> None:
    assert _pair("reset", "TestOverrideTagWithSharedAlias")["networks"] == {"net1": {}, "net2": {}}


@pytest.mark.parametrize(
    "name", ["TestResetTagWithSharedAlias", "TestDirectAliasWithReset", "TestNestedAliasReset"]
)
def test_reset_ports_through_aliases(name: str) -> None:
    got = _pair("reset", name)
    assert got["services"]
    for service in got["services"].values():
        assert "ports" not in service
    assert "x-reset" not in got


# --- NOTES.md section 21: multi-file and multi-document merging --------------------------------


def test_later_document_wins() -> None:
    path = INLINE / "loader/loader/TestLoadMulmtiDocumentYaml__1.yaml"
    docs = load_documents(path.read_text(), path.name)
    assert merge_documents(docs[0].data, docs[1].data)["services"]["test"]["image"] == (
        "nginx:override"
    )


def test_later_name_wins() -> None:
    assert _merge("name: first\nservices: {}\n", "name: overrided\n")["name"] == "overrided"


def _loader_override(name: str) -> dict[str, Any]:
    return _pair("override", name)


def test_network_list_merged_with_aliases() -> None:
    got = _loader_override("TestOverrideNetworks")["services"]["test"]["networks"]
    assert got == {"test_network": {"aliases": ["alias1", "alias2"]}}


def test_build_string_overridden_by_mapping() -> None:
    assert _loader_override("TestOverrideBuildContext")["services"]["test"]["build"] == {
        "context": "src"
    }


def test_depends_on_list_overridden_by_mapping() -> None:
    got = _loader_override("TestOverrideDepends_on")["services"]["test"]["depends_on"]
    assert got == {"foo": {"condition": "service_healthy", "required": False}}


def test_depends_on_partial_override_keeps_condition() -> None:
    got = _loader_override("TestOverridePartial")["services"]["test"]["depends_on"]
    assert got == {"foo": {"condition": "service_healthy", "required": False}}


def test_same_volume_twice_is_one_volume() -> None:
    assert _loader_override("TestOverrideVolume")["services"]["test"]["volumes"] == ["./src:/src"]


# --- spec/13-merge.md --------------------------------------------------------------------------


def test_spec_mapping() -> None:
    got = _merge(
        "services:\n  foo:\n    key1: value1\n    key2: value2\n",
        "services:\n  foo:\n    key2: VALUE\n    key3: value3\n",
    )
    assert got == {"services": {"foo": {"key1": "value1", "key2": "VALUE", "key3": "value3"}}}


def test_spec_sequence() -> None:
    got = _merge(
        "services:\n  foo:\n    DNS:\n      - 1.1.1.1\n",
        "services:\n  foo:\n    DNS:\n      - 8.8.8.8\n",
    )
    assert got["services"]["foo"]["DNS"] == ["1.1.1.1", "8.8.8.8"]


@pytest.mark.parametrize("key", ["command", "entrypoint"])
def test_spec_shell_commands_are_replaced(key: str) -> None:
    got = _merge(
        f'services:\n  foo:\n    {key}: ["echo", "foo"]\n',
        f'services:\n  foo:\n    {key}: ["echo", "bar"]\n',
    )
    assert got["services"]["foo"][key] == ["echo", "bar"]


def test_spec_healthcheck_test_is_replaced_other_fields_merge() -> None:
    got = _merge(
        "services:\n  foo:\n    healthcheck:\n      test: [CMD, a]\n      interval: 5s\n",
        "services:\n  foo:\n    healthcheck:\n      test: [CMD, b]\n",
    )
    assert got["services"]["foo"]["healthcheck"] == {"test": ["CMD", "b"], "interval": "5s"}


def test_command_string_replaced_by_list_and_back() -> None:
    def command(base: str, over: str) -> Any:
        return _merge(
            f"services: {{a: {{command: {base}}}}}", f"services: {{a: {{command: {over}}}}}"
        )["services"]["a"]["command"]

    assert command("echo hi", "[ls]") == ["ls"]
    assert command("[ls]", "echo hi") == "echo hi"


def test_spec_unique_volumes() -> None:
    got = _merge(
        "services:\n  foo:\n    volumes:\n      - foo:/work\n",
        "services:\n  foo:\n    volumes:\n      - bar:/work\n",
    )
    assert got["services"]["foo"]["volumes"] == ["bar:/work"]


def test_spec_reset() -> None:
    got = _merge(
        'services:\n  app:\n    image: myapp\n    ports:\n      - "8080:80"\n'
        "    environment:\n      FOO: BAR\n",
        "services:\n  app:\n    image: myapp\n    ports: !reset []\n"
        "    environment:\n      FOO: !reset null\n",
    )
    assert got["services"]["app"] == {"image": "myapp", "environment": {}}


def test_spec_override() -> None:
    got = _merge(
        'services:\n  app:\n    image: myapp\n    ports:\n      - "8080:80"\n',
        'services:\n  app:\n    ports: !override\n      - "8443:443"\n',
    )
    assert got["services"]["app"] == {"image": "myapp", "ports": ["8443:443"]}


def test_override_mapping_is_not_merged() -> None:
    got = _merge(
        "services: {a: {image: x, environment: {A: '1', B: '2'}}}",
        "services:\n  a:\n    environment: !override {C: '3'}\n",
    )
    assert got["services"]["a"]["environment"] == {"C": "3"}


def test_reset_of_a_whole_service_and_of_a_missing_key() -> None:
    got = _merge(
        "services: {a: {image: x}, b: {image: y}}",
        "services:\n  b: !reset null\n  a:\n    ports: !reset []\n",
    )
    assert got == {"services": {"a": {"image": "x"}}}


# Unique resources: ports on the whole spec, whatever the syntax.


def test_ports_same_spec_in_short_and_long_form_collapse() -> None:
    got = _merge(
        'services: {a: {ports: ["8080:80", "127.0.0.1:9000:9000/udp", 5000]}}',
        "services:\n  a:\n    ports:\n"
        "      - {target: 80, published: 8080, mode: host}\n"
        "      - {target: 9000, published: '9000', host_ip: 127.0.0.1, protocol: udp}\n"
        "      - '5000/tcp'\n"
        "      - '8081:80'\n",
    )
    assert got["services"]["a"]["ports"] == [
        {"target": 80, "published": 8080, "mode": "host"},
        {"target": 9000, "published": "9000", "host_ip": "127.0.0.1", "protocol": "udp"},
        "5000/tcp",
        "8081:80",
    ]


def test_ports_long_entries_with_the_same_spec_merge() -> None:
    got = _merge(
        "services: {a: {ports: [{target: 80, published: '8080', name: web, app_protocol: http}]}}",
        "services: {a: {ports: [{target: 80, published: '8080', mode: host}]}}",
    )
    assert got["services"]["a"]["ports"] == [
        {"target": 80, "published": "8080", "name": "web", "app_protocol": "http", "mode": "host"}
    ]


def test_ports_differing_in_protocol_or_ip_are_distinct() -> None:
    got = _merge(
        'services: {a: {ports: ["8080:80", "127.0.0.1:8080:80"]}}',
        'services: {a: {ports: ["8080:80/udp", "127.0.0.2:8080:80"]}}',
    )
    assert len(got["services"]["a"]["ports"]) == 4


def test_override_on_a_list_item_replaces_instead_of_merging() -> None:
    got = _merge(
        "services: {a: {ports: [{target: 80, published: '8080', name: web}]}}",
        "services:\n  a:\n    ports:\n      - !override {target: 80, published: '8080'}\n",
    )
    assert got["services"]["a"]["ports"] == [{"target": 80, "published": "8080"}]


def test_volumes_by_target_in_either_form() -> None:
    got = _merge(
        "services: {a: {volumes: ['data:/data', './cfg:/etc/app/', {type: tmpfs, target: /t}]}}",
        "services:\n  a:\n    volumes:\n"
        "      - {type: volume, source: other, target: /data, read_only: true}\n"
        "      - ./conf:/etc/app:ro\n"
        "      - {type: tmpfs, target: /t, tmpfs: {size: 1000}}\n",
    )
    assert got["services"]["a"]["volumes"] == [
        {"type": "volume", "source": "other", "target": "/data", "read_only": True},
        "./conf:/etc/app:ro",
        {"type": "tmpfs", "target": "/t", "tmpfs": {"size": 1000}},
    ]


def test_volume_of_another_type_replaces_instead_of_merging() -> None:
    got = _merge(
        "services: {a: {volumes: [{type: volume, source: v, target: /d, volume: {nocopy: true}}]}}",
        "services: {a: {volumes: [{type: bind, source: ./d, target: /d}]}}",
    )
    assert got["services"]["a"]["volumes"] == [{"type": "bind", "source": "./d", "target": "/d"}]


def test_secrets_and_configs_by_target() -> None:
    got = _merge(
        "services: {a: {secrets: [s1, s2], configs: [c1, {source: c2, target: /etc/c2}]}}",
        "services:\n  a:\n    secrets:\n      - {source: s3, target: s1}\n      - s2\n"
        "    configs:\n      - {source: c1, mode: 0440}\n      - {source: c3, target: /etc/c2}\n",
    )
    assert got["services"]["a"]["secrets"] == [{"source": "s3", "target": "s1"}, "s2"]
    assert got["services"]["a"]["configs"] == [
        {"source": "c1", "mode": 0o440},
        {"source": "c3", "target": "/etc/c2"},
    ]


def test_devices_tmpfs_and_env_files_by_path() -> None:
    got = _merge(
        "services: {a: {devices: ['/dev/a:/dev/x'], tmpfs: /run, env_file: [a.env, b.env]}}",
        "services: {a: {devices: ['/dev/b:/dev/x:r'], tmpfs: ['/run:size=1m', /tmp],"
        " env_file: [{path: a.env, required: false}]}}",
    )
    service = got["services"]["a"]
    assert service["devices"] == ["/dev/b:/dev/x:r"]
    assert service["tmpfs"] == ["/run:size=1m", "/tmp"]
    assert service["env_file"] == [{"path": "a.env", "required": False}, "b.env"]


def test_set_like_lists_drop_repeats() -> None:
    got = _merge(
        "services: {a: {cap_add: [NET_ADMIN], dns: 1.1.1.1, security_opt: [x], expose: [80]}}",
        "services: {a: {cap_add: [CAP_NET_ADMIN, SYS_TIME], dns: [1.1.1.1, 8.8.8.8],"
        " security_opt: [x, y], expose: ['80/tcp', '81']}}",
    )
    service = got["services"]["a"]
    assert service["cap_add"] == ["CAP_NET_ADMIN", "SYS_TIME"]
    assert service["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert service["security_opt"] == ["x", "y"]
    assert service["expose"] == ["80/tcp", "81"]


def test_other_sequences_append() -> None:
    got = _merge(
        "services: {a: {post_start: [{command: a}]}}\nx-list: [1, 2]\n",
        "services: {a: {post_start: [{command: a}]}}\nx-list: [2]\n",
    )
    assert got["services"]["a"]["post_start"] == [{"command": "a"}, {"command": "a"}]
    assert got["x-list"] == [1, 2, 2]


def test_environment_by_key_override_wins() -> None:
    got = _merge(
        "services: {a: {environment: [A=1, B=2, C]}}",
        "services: {a: {environment: {B: '3', C: x, D: null}}}",
    )
    assert got["services"]["a"]["environment"] == {"A": "1", "B": "3", "C": "x", "D": None}


def test_environment_reset_of_a_key_from_a_list() -> None:
    got = _merge(
        "services: {a: {environment: {FOO: BAR, KEEP: ME}, labels: {a: b}}}",
        "services: {a: {environment: [ANOTHER=BAR, PASSTHROUGH], labels: [c=d]}}",
        "services:\n  a:\n    environment:\n      FOO: !reset\n      ANOTHER: !reset\n"
        "      PASSTHROUGH: !reset\n    labels:\n      a: !reset\n",
    )
    assert got["services"]["a"] == {"environment": {"KEEP": "ME"}, "labels": {"c": "d"}}


def test_networks_and_depends_on_by_name() -> None:
    got = _merge(
        "services: {a: {networks: {front: {aliases: [x]}, back: null}, depends_on: [db]}}",
        "services: {a: {networks: [front, extra],"
        " depends_on: {cache: {condition: service_healthy}}}}",
    )
    service = got["services"]["a"]
    assert service["networks"] == {"front": {"aliases": ["x"]}, "back": None, "extra": None}
    assert service["depends_on"] == {
        "db": {"condition": "service_started"},
        "cache": {"condition": "service_healthy"},
    }


def test_short_form_name_keeps_the_inherited_settings() -> None:
    got = _merge(
        "services: {a: {depends_on: {db: {condition: service_healthy}}}}",
        "services: {a: {depends_on: [db, cache]}}",
    )
    assert got["services"]["a"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "cache": {"condition": "service_started"},
    }


def test_null_override_keeps_the_inherited_value() -> None:
    got = _merge("services: {a: {image: x, networks: {n: {aliases: [y]}}}}", "services:\n  a:\n")
    assert got == {"services": {"a": {"image": "x", "networks": {"n": {"aliases": ["y"]}}}}}


def test_ulimits_entries_are_replaced_whole() -> None:
    got = _merge(
        "services: {a: {ulimits: {nofile: {soft: 1, hard: 2}, nproc: 5}}}",
        "services: {a: {ulimits: {nofile: 3, nproc: {soft: 1, hard: 9}}}}",
    )
    assert got["services"]["a"]["ulimits"] == {"nofile": 3, "nproc": {"soft": 1, "hard": 9}}


def test_extra_hosts_keep_several_addresses_per_host() -> None:
    got = _merge(
        "services: {a: {extra_hosts: ['h=1.1.1.1', 'v6:::1']}}",
        "services: {a: {extra_hosts: {h: ['1.1.1.1', '2.2.2.2'], v6: '[::1]'}}}",
    )
    assert got["services"]["a"]["extra_hosts"] == ["h=1.1.1.1", "v6:::1", "h=2.2.2.2"]


def test_top_level_resources_merge_by_name() -> None:
    got = _merge(
        "volumes: {v: {driver: local, labels: [a=1]}}\nsecrets: {s: {file: ./a}}\n",
        "volumes: {v: {labels: {b: '2'}}, w: null}\nsecrets: {s: !override {environment: S}}\n",
    )
    assert got["volumes"] == {"v": {"driver": "local", "labels": {"a": "1", "b": "2"}}, "w": None}
    assert got["secrets"] == {"s": {"environment": "S"}}


def test_markers_in_the_first_file_are_stripped() -> None:
    got = merge_documents(
        _yaml("services:\n  a:\n    image: !override x\n    ports: !reset []\n"), {}
    )
    assert got == {"services": {"a": {"image": "x"}}}


def test_documents_must_be_mappings() -> None:
    with pytest.raises(ComposeError):
        merge_documents({}, [])  # type: ignore[arg-type]


def test_inputs_are_not_mutated_and_untouched_subtrees_are_shared() -> None:
    base = _yaml("services: {a: {image: x, environment: [A=1]}, b: {image: y}}\nnetworks: {n: {}}")
    over = _yaml("services: {a: {environment: {B: '2'}, ports: !reset []}}")
    before = copy.deepcopy((base, over))
    got = merge_documents(base, over)
    assert (base, over) == before
    assert got["services"]["b"] is base["services"]["b"]
    assert got["networks"] is base["networks"]


# --- extends (spec/05-services.md) -------------------------------------------------------------


def test_extends_environment_mapping() -> None:
    common = {"image": "busybox", "environment": {"TZ": "utc", "PORT": 80}}
    assert merge_service(common, {"environment": {"PORT": 8080}}) == {
        "image": "busybox",
        "environment": {"TZ": "utc", "PORT": 8080},
    }
    # "The same output is produced if array syntax is used."
    listed = merge_service(
        {"image": "busybox", "environment": ["TZ=utc", "PORT=80"]}, {"environment": ["PORT=8080"]}
    )
    assert _kv(listed["environment"]) == {"TZ": "utc", "PORT": "8080"}


def test_extends_volumes_by_target() -> None:
    got = merge_service(
        {"image": "busybox", "volumes": ["common-volume:/var/lib/backup/data:rw"]},
        {"volumes": ["cli-volume:/var/lib/backup/data:ro"]},
    )
    assert got == {"image": "busybox", "volumes": ["cli-volume:/var/lib/backup/data:ro"]}


def test_extends_chain() -> None:
    base = {"image": "busybox", "user": "root"}
    common = merge_service(base, {"image": "busybox"})
    assert merge_service(common, {}) == {"image": "busybox", "user": "root"}


def test_extends_sequences() -> None:
    got = merge_service(
        {"image": "busybox", "security_opt": ["label:role:ROLE"], "dns": ["1.1.1.1"]},
        {"security_opt": ["label:user:USER", "label:role:ROLE"], "dns": "1.1.1.1"},
    )
    assert got["security_opt"] == ["label:role:ROLE", "label:user:USER"]
    assert got["dns"] == ["1.1.1.1", "1.1.1.1"]  # "duplicates ... are not removed"


def test_extends_extra_hosts_is_a_mapping() -> None:
    got = merge_service(
        {"extra_hosts": ["a=1.1.1.1", "b=2.2.2.2", "b=2.2.2.3"]},
        {"extra_hosts": {"b": "9.9.9.9", "c": ["3.3.3.3"]}},
    )
    assert got["extra_hosts"] == ["a=1.1.1.1", "b=9.9.9.9", "c=3.3.3.3"]


def test_extends_reset_and_override() -> None:
    got = merge_service(
        {"image": "x", "command": "sleep", "volumes": ["/a:/a"], "depends_on": ["db"]},
        _yaml("command: !reset\nvolumes: !reset []\ndepends_on: !override [cache]\n"),
    )
    assert got == {"image": "x", "depends_on": ["cache"]}


def test_extends_merges_depends_on_and_volumes_from() -> None:
    got = merge_service(
        {"depends_on": ["db"], "volumes_from": ["data:ro"]},
        {"depends_on": ["cache"], "volumes_from": ["data:rw", "container:c"]},
    )
    assert got == {"depends_on": ["db", "cache"], "volumes_from": ["data:rw", "container:c"]}


def test_extends_override_in_the_middle_of_a_chain() -> None:
    # compose-go TestOverrideMiddle and TestOverrideSelfExtends
    base = {"volumes": ["/foo:/foo"], "networks": ["foo"]}
    middle = merge_service(base, _yaml("volumes: !override [/bar:/bar]\nnetworks: !override [bar]"))
    top = merge_service(
        middle, _yaml("image: test\nvolumes: [/zot:/zot]\nnetworks: !override [zot]")
    )
    assert top == {"volumes": ["/bar:/bar", "/zot:/zot"], "networks": ["zot"], "image": "test"}

    main_one = {"image": "nginx", "depends_on": ["depend_one"], "ports": ["8090:80"]}
    main_two = merge_service(main_one, _yaml("depends_on: !override [depend_two]"))
    main = merge_service(main_two, {"depends_on": ["depend_base"]})
    assert main["depends_on"] == ["depend_two", "depend_base"]


def test_extends_of_an_empty_service() -> None:
    assert merge_service(None, {"image": "x"}) == {"image": "x"}


def test_extends_cannot_disable_an_enabled_healthcheck() -> None:
    base = {"healthcheck": {"test": ["CMD", "true"], "interval": "5s"}}
    with pytest.raises(ComposeError) as info:
        merge_service(base, {"healthcheck": {"disable": True}}, path=("services", "web"))
    assert info.value.path == ("services", "web", "healthcheck", "disable")
    replaced = merge_service(base, _yaml("healthcheck: !override {disable: true}\n"))
    assert replaced == {"healthcheck": {"disable": True}}
    disabled = {"healthcheck": {"disable": True}}
    assert merge_service(disabled, {"healthcheck": {"disable": True}}) == disabled
    assert merge_service({}, {"healthcheck": {"disable": True}}) == disabled


# --- strip_markers / enforce_unicity -----------------------------------------------------------


def test_strip_markers() -> None:
    doc = {"a": Reset(), "b": Override({"c": [1, Reset(), Override(2)]}), "d": {"e": 1}}
    assert strip_markers(doc) == {"b": {"c": [1, 2]}, "d": {"e": 1}}
    clean = {"a": [1, {"b": 2}]}
    assert strip_markers(clean) is clean


def test_enforce_unicity_leaves_unique_lists_alone() -> None:
    service = {"image": "x", "ports": ["80:80"], "environment": {"A": "1"}}
    assert enforce_unicity(service) is service


def test_enforce_unicity_nested() -> None:
    got = enforce_unicity({"build": {"args": ["A=1", "A=2"]}, "cap_add": ["ALL", "ALL"]})
    assert got == {"build": {"args": ["A=2"]}, "cap_add": ["ALL"]}


# --- properties --------------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "services", "web", "db", "networks", "volumes", "secrets", "configs", "environment",
        "labels", "ports", "depends_on", "extra_hosts", "build", "command", "logging", "driver",
        "ulimits", "nofile", "healthcheck", "test", "disable", "deploy", "tmpfs", "dns",
        "env_file", "devices", "cap_add", "links", "ipam", "config", "subnet", "target",
        "published", "source", "type", "x-a", "models", "aliases", "blkio_config",
        "device_read_bps", "path", "extends", "args", "volumes_from", "expose",
    ]
)  # fmt: skip
_KEYS = _KEYS | st.text(max_size=4)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.floats(allow_nan=False)
    | st.sampled_from(["80:80", "a=b", "a:/b", "/x", "127.0.0.1:1:2/udp", "h:1.2.3.4", "bad::"])
    | st.text(max_size=6)
)
_MARKERS = st.just(Reset()) | st.builds(Override, _SCALARS)
_TREES = st.recursive(
    _SCALARS | _MARKERS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_KEYS, children, max_size=4)
        | st.builds(Override, children)
    ),
    max_leaves=30,
)
_SERVICE_KEYS = st.sampled_from(
    [
        "annotations", "labels", "environment", "sysctls", "build", "command", "entrypoint",
        "extends", "healthcheck", "logging", "ulimits", "deploy", "depends_on", "networks",
        "models", "ports", "volumes", "secrets", "configs", "devices", "tmpfs", "env_file",
        "label_file", "dns", "dns_opt", "dns_search", "cap_add", "cap_drop", "expose",
        "external_links", "links", "profiles", "security_opt", "group_add", "volumes_from",
        "extra_hosts", "blkio_config", "image",
    ]
)  # fmt: skip
_SERVICES = st.dictionaries(_SERVICE_KEYS, _TREES, max_size=6)
_DOCS = st.dictionaries(_KEYS, _TREES, max_size=5) | st.fixed_dictionaries(
    {"services": st.dictionaries(st.sampled_from(["web", "db"]), _SERVICES, max_size=2)}
)


def _markers_in(value: Any) -> bool:
    if isinstance(value, Reset | Override):
        return True
    if isinstance(value, dict):
        return any(_markers_in(v) for v in value.values())
    if isinstance(value, list):
        return any(_markers_in(v) for v in value)
    return False


@settings(max_examples=400, deadline=None)
@given(_DOCS, _DOCS)
def test_merging_random_trees_returns_a_value_or_raises_compose_error(
    base: dict[str, Any], override: dict[str, Any]
) -> None:
    before = copy.deepcopy((base, override))
    try:
        got = merge_documents(base, override)
    except ComposeError:
        return
    assert isinstance(got, dict)
    assert not _markers_in(got)
    assert (base, override) == before
    for service in (
        (got.get("services") or {}).values() if isinstance(got.get("services"), dict) else []
    ):
        if isinstance(service, dict):
            enforce_unicity(service)


@settings(max_examples=300, deadline=None)
@given(_SERVICES, _SERVICES)
def test_merge_service_on_random_trees(base: dict[str, Any], override: dict[str, Any]) -> None:
    try:
        got = merge_service(base, override)
    except ComposeError:
        return
    assert not _markers_in(got)


@settings(max_examples=300, deadline=None)
@given(_DOCS)
def test_merging_nothing_only_strips_markers(doc: dict[str, Any]) -> None:
    assert merge_documents(doc, {}) == strip_markers(doc)
    assert merge_documents({}, doc) == strip_markers(doc)


def test_float_keys_do_not_break_hashing() -> None:
    got = _merge("services: {a: {dns: [.nan, 1.5]}}", "services: {a: {dns: [.nan]}}")
    assert math.isnan(got["services"]["a"]["dns"][0])
