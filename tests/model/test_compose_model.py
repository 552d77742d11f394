"""The Compose project model: construction from canonical dicts, casts, error paths, the dump."""

from __future__ import annotations

import ast
import copy
import json
import time
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import shoal.model
from shoal.model import compose as cm
from shoal.model.compose import (
    ALL_DEVICES,
    ComposeProject,
    NetworkSpec,
    ServiceSpec,
    VolumeSpec,
    from_compose_dict,
    to_compose_dict,
)
from tests.corpus import CORPUS, SCHEMA

SCHEMA_DOC = json.loads(SCHEMA.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA_DOC)
NORMALIZE = sorted((CORPUS / "compose-go/inline/loader/normalize").glob("*__2.yaml"))
MIB, GIB = 1 << 20, 1 << 30


def assert_schema_valid(data):
    errors = sorted(VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def nested(path, value):
    """`("services", "web", "x")`, 1 → `{"services": {"web": {"x": 1}}}` (ints make lists)."""
    for key in reversed(path):
        value = [value] if isinstance(key, int) else {key: value}
    return value


def error_locs(data):
    with pytest.raises(ValidationError) as info:
        ComposeProject.model_validate(data)
    return [e["loc"] for e in info.value.errors()]


# full-example.yml (compose-go historical fixture), rewritten by hand in the canonical long form
# the canonicaliser produces; values (sizes, durations, modes) are still as written.
FULL_CANONICAL = yaml.safe_load(
    r"""
name: full_example_project_name
services:
  bar:
    build:
      dockerfile_inline: |
        FROM alpine
        RUN echo "hello" > /world.txt
  foo:
    annotations: {com.example.foo: bar}
    build:
      context: ./dir
      dockerfile: Dockerfile
      args: {foo: bar}
      ssh: {default: null}
      target: foo
      network: foo
      cache_from: [foo, bar]
      labels: {FOO: BAR}
      additional_contexts: {foo: ./bar}
      secrets:
        - {source: secret1, target: /run/secrets/secret1}
        - {source: secret2, target: my_secret, uid: '103', gid: '103', mode: 0440}
      tags: ["foo:v1.0.0", "docker.io/username/foo:my-other-tag", "full_example:1.0.0"]
      platforms: [linux/amd64, linux/arm64]
      shm_size: 2gb
    cap_add: [ALL]
    cap_drop: [NET_ADMIN, SYS_ADMIN]
    cgroup_parent: m-executor-abcd
    command: [bundle, exec, thin, -p, "3000"]
    configs:
      - {source: config1}
      - {source: config2, target: /my_config, uid: '103', gid: '103', mode: 0440}
    container_name: my-web-container
    depends_on:
      db: {condition: service_started, required: true, restart: false}
      redis: {condition: service_started, required: true, restart: false}
    deploy:
      mode: replicated
      replicas: 6
      labels: {FOO: BAR}
      rollback_config:
        {parallelism: 3, delay: 10s, failure_action: continue, monitor: 60s,
         max_failure_ratio: 0.3, order: start-first}
      update_config:
        {parallelism: 3, delay: 10s, failure_action: continue, monitor: 60s,
         max_failure_ratio: 0.3, order: start-first}
      resources:
        limits: {cpus: '0.001', memory: 50M}
        reservations:
          cpus: '0.0001'
          memory: 20M
          generic_resources:
            - discrete_resource_spec: {kind: gpu, value: 2}
            - discrete_resource_spec: {kind: ssd, value: 1}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 120s}
      placement:
        constraints: [node=foo]
        max_replicas_per_node: 5
        preferences: [{spread: node.labels.az}]
      endpoint_mode: dnsrr
    device_cgroup_rules: ["c 1:3 mr", "a 7:* rmw"]
    devices:
      - {source: /dev/ttyUSB0, target: /dev/ttyUSB0, permissions: rwm}
    dns: [8.8.8.8, 9.9.9.9]
    dns_search: [dc1.example.com, dc2.example.com]
    domainname: foo.com
    entrypoint: [/code/entrypoint.sh, -p, "3000"]
    env_file:
      - {path: ./example1.env, required: true}
      - {path: ./example2.env, required: false}
    environment: {BAZ: baz_from_service_def, QUX: null}
    expose: ["3000", "8000"]
    external_links: [redis_1, "project_db_1:mysql", "project_db_1:postgresql"]
    extra_hosts:
      otherhost: [50.31.209.229]
      somehost: [162.242.195.82]
    hostname: foo
    healthcheck:
      test: [CMD-SHELL, echo "hello world"]
      interval: 10s
      timeout: 1s
      retries: 5
      start_period: 15s
      start_interval: 5s
    image: redis
    ipc: host
    uts: host
    labels:
      com.example.description: Accounting webapp
      com.example.number: "42"
      com.example.empty-label: ""
    label_file: [./example1.label, ./example2.label]
    links: [db, "db:database", redis]
    logging:
      driver: syslog
      options: {syslog-address: "tcp://192.168.0.42:123"}
    mac_address: 02:42:ac:11:65:43
    network_mode: "container:0cfeab0f748b9a743dc3da582046357c6ef497631c1a016d28d2bf9b4f899f7b"
    networks:
      some-network: {aliases: [alias1, alias3]}
      other-network:
        ipv4_address: 172.16.238.10
        ipv6_address: 2001:3984:3989::10
        mac_address: 02:42:72:98:65:08
      other-other-network: null
    pid: host
    ports:
      - {target: 3000, protocol: tcp, mode: ingress}
      - {target: 3001, protocol: tcp, mode: ingress}
      - {target: 8000, published: "8000", protocol: tcp, mode: ingress}
      - {target: 8080, published: "9090", protocol: tcp, mode: ingress}
      - {target: 8081, published: "9091", protocol: tcp, mode: ingress}
      - {target: 22, published: "49100", protocol: tcp, mode: ingress}
      - {target: 8001, published: "8001", host_ip: 127.0.0.1, protocol: tcp, mode: ingress}
      - {target: 5000, published: "5000-5010", host_ip: 127.0.0.1, protocol: tcp, mode: ingress}
    privileged: true
    read_only: true
    restart: always
    secrets:
      - {source: secret1, target: /run/secrets/secret1}
      - {source: secret2, target: my_secret, uid: '103', gid: '103', mode: 0440}
    security_opt: ["label=level:s0:c100,c200", "label=type:svirt_apache_t"]
    stdin_open: true
    stop_grace_period: 20s
    stop_signal: SIGUSR1
    storage_opt: {size: 20G}
    sysctls: {net.core.somaxconn: "1024", net.ipv4.tcp_syncookies: "0"}
    tmpfs: [/run, /tmp]
    tty: true
    ulimits:
      nproc: 65535
      nofile: {soft: 20000, hard: 40000}
    user: someone
    volumes:
      - {type: volume, target: /var/lib/anonymous, volume: {}}
      - {type: bind, source: /opt/data, target: /var/lib/data, bind: {create_host_path: true}}
      - {type: bind, source: ., target: /code, bind: {create_host_path: true}}
      - type: bind
        source: ./static
        target: /var/www/html
        bind: {create_host_path: true}
      - type: bind
        source: ~/configs
        target: /etc/configs
        read_only: true
        bind: {create_host_path: true}
      - {type: volume, source: datavolume, target: /var/lib/volume, volume: {}}
      - {type: bind, source: ./opt, target: /opt/cached, consistency: cached}
      - {type: tmpfs, target: /opt/tmpfs, tmpfs: {size: 10000}}
    working_dir: /code
    x-bar: baz
    x-foo: bar
networks:
  some-network: null
  other-network:
    driver: overlay
    driver_opts: {foo: bar, baz: 1}
    ipam:
      driver: overlay
      config:
        - subnet: 172.28.0.0/16
          ip_range: 172.28.5.0/24
          gateway: 172.28.5.254
          aux_addresses: {host1: 172.28.1.5, host2: 172.28.1.6, host3: 172.28.1.7}
        - {subnet: "2001:3984:3989::/64", gateway: "2001:3984:3989::1"}
    labels: {foo: bar}
  external-network: {external: true}
  other-external-network:
    external: {name: my-cool-network}
    x-bar: baz
    x-foo: bar
volumes:
  some-volume: null
  other-volume:
    driver: flocker
    driver_opts: {foo: bar, baz: 1}
    labels: {foo: bar}
  another-volume:
    name: user_specified_name
    driver: vsphere
    driver_opts: {foo: bar, baz: 1}
  external-volume: {external: true}
  other-external-volume:
    external: {name: my-cool-volume}
  external-volume3:
    name: this-is-volume3
    external: true
    x-bar: baz
    x-foo: bar
configs:
  config1: {file: ./config_data, labels: {foo: bar}}
  config2: {external: {name: my_config}}
  config3: {external: true}
  config4: {name: foo, file: ~/config_data, x-bar: baz, x-foo: bar}
secrets:
  secret1: {file: ./secret_data, labels: {foo: bar}}
  secret2: {external: {name: my_secret}}
  secret3: {external: true}
  secret4: {name: bar, environment: BAR, x-bar: baz, x-foo: bar}
  secret5: {file: /abs/secret_data}
x-bar: baz
x-foo: bar
x-nested: {bar: baz, foo: bar}
"""
)


@pytest.fixture(scope="module")
def full():
    return from_compose_dict(copy.deepcopy(FULL_CANONICAL))


# --- the full example ------------------------------------------------------------------------


def test_full_example_values(full):
    foo = full.services["foo"]
    assert full.name == "full_example_project_name"
    assert full.extensions == {
        "x-bar": "baz",
        "x-foo": "bar",
        "x-nested": {"bar": "baz", "foo": "bar"},
    }
    assert foo.extensions == {"x-bar": "baz", "x-foo": "bar"}
    # NOTES section 19: uid/gid strings, mode 0440 (PyYAML gives the int 0o440)
    secret2 = foo.secrets[1]
    assert (secret2.source, secret2.target, secret2.uid, secret2.gid, secret2.mode) == (
        "secret2",
        "my_secret",
        "103",
        "103",
        0o440,
    )
    assert foo.build.secrets[1].mode == 0o440
    assert foo.build.shm_size == 2 * GIB
    assert foo.build.ssh == {"default": None}
    # NOTES section 9
    deploy = foo.deploy
    assert deploy.replicas == 6
    assert deploy.labels == {"FOO": "BAR"}
    assert deploy.resources.limits.cpus == pytest.approx(0.001)
    assert deploy.resources.limits.memory == 50 * MIB
    assert deploy.resources.reservations.memory == 20 * MIB
    assert deploy.resources.reservations.generic_resources[0].discrete_resource_spec.value == 2
    assert deploy.update_config.max_failure_ratio == pytest.approx(0.3)
    assert deploy.update_config.order == "start-first"
    assert deploy.placement.preferences[0].spread == "node.labels.az"
    # NOTES section 7
    assert deploy.restart_policy.window == timedelta(minutes=2)
    assert deploy.restart_policy.delay == timedelta(seconds=5)
    assert deploy.update_config.delay == timedelta(seconds=10)
    assert deploy.update_config.monitor == timedelta(seconds=60)
    hc = foo.healthcheck
    assert (hc.interval, hc.timeout, hc.start_period, hc.start_interval, hc.retries) == (
        timedelta(seconds=10),
        timedelta(seconds=1),
        timedelta(seconds=15),
        timedelta(seconds=5),
        5,
    )
    assert hc.test == ["CMD-SHELL", 'echo "hello world"']
    assert foo.stop_grace_period == timedelta(seconds=20)
    assert foo.ulimits["nproc"].soft == foo.ulimits["nproc"].hard == 65535
    assert (foo.ulimits["nofile"].soft, foo.ulimits["nofile"].hard) == (20000, 40000)
    assert foo.volumes[-1].tmpfs.size == 10000
    assert foo.environment == {"BAZ": "baz_from_service_def", "QUX": None}
    assert foo.networks["other-other-network"] is None
    assert foo.networks["other-network"].ipv4_address == "172.16.238.10"
    assert foo.depends_on["db"].condition == "service_started"
    # NOTES section 20: driver_opts values are strings; section 17: legacy external.name
    other = full.networks["other-network"]
    assert other.driver_opts == {"foo": "bar", "baz": "1"}
    assert other.ipam.config[0].aux_addresses["host1"] == "172.28.1.5"
    assert full.networks["some-network"] == NetworkSpec()
    legacy = full.networks["other-external-network"]
    assert (legacy.name, legacy.external) == ("my-cool-network", True)
    assert legacy.extensions == {"x-bar": "baz", "x-foo": "bar"}
    assert (
        full.volumes["other-external-volume"].name,
        full.volumes["other-external-volume"].external,
    ) == (
        "my-cool-volume",
        True,
    )
    assert full.volumes["some-volume"] == VolumeSpec()
    assert full.secrets["secret2"].name == "my_secret"
    assert full.configs["config2"].name == "my_config"


def test_full_example_dump_is_schema_valid_and_stable(full):
    dumped = to_compose_dict(full)
    assert_schema_valid(dumped)
    assert json.loads(json.dumps(dumped)) == dumped  # plain JSON types only
    assert to_compose_dict(from_compose_dict(dumped)) == dumped


def test_full_example_dump_shapes(full):
    foo = to_compose_dict(full)["services"]["foo"]
    assert foo["ports"][2] == {
        "target": 8000,
        "published": "8000",
        "protocol": "tcp",
        "mode": "ingress",
    }
    assert foo["deploy"]["resources"]["limits"] == {"cpus": 0.001, "memory": str(50 * MIB)}
    assert foo["deploy"]["restart_policy"] == {
        "condition": "on-failure",
        "delay": "5s",
        "max_attempts": 3,
        "window": "2m0s",
    }
    assert foo["deploy"]["update_config"]["monitor"] == "1m0s"
    assert foo["healthcheck"]["interval"] == "10s"
    assert foo["stop_grace_period"] == "20s"
    assert foo["build"]["shm_size"] == 2 * GIB
    assert foo["secrets"][1]["mode"] == 0o440
    assert foo["ulimits"] == {"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}}
    assert foo["volumes"][0] == {"type": "volume", "target": "/var/lib/anonymous", "volume": {}}
    assert foo["environment"] == {"BAZ": "baz_from_service_def", "QUX": None}
    assert foo["x-bar"] == "baz"
    assert "extensions" not in foo
    assert foo["networks"]["other-other-network"] is None
    dumped = to_compose_dict(full)
    assert dumped["networks"]["some-network"] == {}
    assert dumped["networks"]["other-external-network"] == {
        "name": "my-cool-network",
        "external": True,
        "x-bar": "baz",
        "x-foo": "bar",
    }
    assert dumped["x-nested"] == {"bar": "baz", "foo": "bar"}


# A canonical dict already in dump form (Go durations, sizes in bytes): dict → model → dict is
# the identity.
EXACT = {
    "name": "exact",
    "services": {
        "web": {
            "image": "nginx:1.27",
            "command": ["nginx", "-g", "daemon off;"],
            "entrypoint": [],
            "environment": {"A": "1", "B": None},
            "labels": {"com.example": "x"},
            "ports": [
                {
                    "target": 80,
                    "published": "8080",
                    "host_ip": "127.0.0.1",
                    "protocol": "tcp",
                    "mode": "ingress",
                },
                {
                    "target": 53,
                    "published": "10053",
                    "protocol": "udp",
                    "mode": "ingress",
                    "name": "dns",
                },
                {
                    "target": 443,
                    "published": "8443-8450",
                    "protocol": "tcp",
                    "mode": "host",
                    "app_protocol": "https",
                },
            ],
            "volumes": [
                {
                    "type": "bind",
                    "source": "./html",
                    "target": "/usr/share/nginx/html",
                    "read_only": True,
                    "bind": {"create_host_path": True, "selinux": "z", "propagation": "rslave"},
                },
                {
                    "type": "volume",
                    "source": "data",
                    "target": "/data",
                    "volume": {"nocopy": True, "subpath": "sub"},
                },
                {"type": "tmpfs", "target": "/cache", "tmpfs": {"size": 1048576, "mode": 0o1777}},
                {
                    "type": "image",
                    "source": "alpine",
                    "target": "/img",
                    "image": {"subpath": "etc"},
                },
            ],
            "depends_on": {
                "db": {"condition": "service_healthy", "required": True, "restart": True},
                "cache": {
                    "condition": "service_completed_successfully",
                    "required": False,
                    "restart": False,
                },
            },
            "networks": {
                "default": None,
                "back": {"aliases": ["www"], "priority": 10, "gw_priority": 1},
            },
            "healthcheck": {
                "test": ["CMD", "curl", "-f", "http://localhost"],
                "interval": "1m30s",
                "timeout": "10s",
                "retries": 3,
                "start_period": "40s",
                "start_interval": "5s",
            },
            "deploy": {
                "mode": "replicated",
                "replicas": 2,
                "resources": {
                    "limits": {"cpus": 0.5, "memory": "536870912", "pids": 100},
                    "reservations": {
                        "memory": "1073741824",
                        "devices": [
                            {"capabilities": ["gpu"], "driver": "nvidia", "count": "all"},
                            {"capabilities": ["gpu"], "device_ids": ["0", "3"]},
                        ],
                    },
                },
                "restart_policy": {
                    "condition": "on-failure",
                    "delay": "5s",
                    "max_attempts": 3,
                    "window": "2m0s",
                },
                "update_config": {"parallelism": 2, "delay": "10s", "order": "stop-first"},
            },
            "env_file": [{"path": ".env", "required": False, "format": "raw"}],
            "extra_hosts": {"somehost": ["162.242.195.82"], "multi": ["127.0.0.2", "ff02::1"]},
            "ulimits": {"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}},
            "secrets": [{"source": "token", "target": "/run/secrets/token", "mode": 0o400}],
            "configs": [{"source": "conf", "target": "/etc/conf", "uid": "1000", "gid": "1000"}],
            "devices": [{"source": "/dev/fuse", "target": "/dev/fuse", "permissions": "rwm"}],
            "gpus": [{"count": "all", "capabilities": ["gpu"]}],
            "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
            "post_start": [
                {
                    "command": ["./hook.sh"],
                    "user": "root",
                    "privileged": True,
                    "environment": {"FOO": "BAR"},
                }
            ],
            "pre_stop": [{"command": ["./bye.sh"]}],
            "pre_start": [{"command": ["migrate"], "image": "alpine", "per_replica": False}],
            "develop": {
                "watch": [
                    {
                        "path": "./src",
                        "action": "sync",
                        "target": "/app",
                        "ignore": ["node_modules"],
                    },
                    {"path": "package.json", "action": "rebuild"},
                ]
            },
            "shm_size": 67108864,
            "mem_limit": 1073741824,
            "memswap_limit": -1,
            "stop_grace_period": "1m0s",
            "blkio_config": {
                "weight": 300,
                "device_read_bps": [{"path": "/dev/sda", "rate": 12582912}],
                "weight_device": [{"path": "/dev/sda", "weight": 400}],
            },
            "cpu_rt_runtime": 400000,
            "sysctls": {"net.core.somaxconn": "1024"},
            "models": {"llm": {"endpoint_var": "LLM_URL"}, "embed": None},
            "provider": {"type": "awesomecloud", "options": {"type": "mysql", "size": ["1", "2"]}},
            "credential_spec": {"file": "spec.json"},
            "profiles": ["debug"],
            "pull_policy": "daily",
            "scale": 2,
            "cgroup": "private",
            "init": True,
            "x-custom": {"anything": [1, 2]},
        },
        "builder": {
            "build": {
                "context": ".",
                "dockerfile": "Dockerfile",
                "args": {"VERSION": "1", "UNSET": None},
                "ssh": {"default": None},
                "labels": {"a": "b"},
                "target": "prod",
                "secrets": [{"source": "npmrc", "target": "/root/.npmrc"}],
                "ulimits": {"nofile": 1024},
                "provenance": "mode=max",
                "sbom": "true",
                "no_cache_filter": ["stage1"],
                "extra_hosts": {"h": ["10.0.0.1"]},
            },
            "extends": {"service": "web", "file": "base.yaml"},
        },
    },
    "networks": {
        "back": {
            "name": "exact_back",
            "driver": "bridge",
            "internal": True,
            "enable_ipv6": True,
            "ipam": {
                "driver": "default",
                "config": [{"subnet": "172.28.0.0/16"}],
                "options": {"a": "b"},
            },
        },
        "outside": {"name": "proxy", "external": True},
        "default": {"name": "exact_default"},
    },
    "volumes": {
        "data": {
            "name": "exact_data",
            "driver": "local",
            "driver_opts": {"type": "nfs"},
            "labels": {"k": "v"},
        }
    },
    "secrets": {"token": {"name": "exact_token", "environment": "TOKEN"}},
    "configs": {"conf": {"name": "exact_conf", "content": "hello\n"}},
    "models": {
        "llm": {"model": "ai/smollm2", "context_size": 4096, "runtime_flags": ["--verbose"]}
    },
    "include": [{"path": ["./other/compose.yaml"], "env_file": ["./other/.env"]}],
    "x-top": [1, {"a": None}],
}


def test_exact_canonical_round_trip():
    assert_schema_valid(EXACT)
    dumped = to_compose_dict(from_compose_dict(copy.deepcopy(EXACT)))
    assert dumped == EXACT
    assert_schema_valid(dumped)


def test_exact_model_values():
    project = from_compose_dict(copy.deepcopy(EXACT))
    web = project.services["web"]
    devices = web.deploy.resources.reservations.devices
    assert devices[0].count == ALL_DEVICES
    assert devices[1].count is None
    assert web.gpus[0].count == ALL_DEVICES
    assert web.healthcheck.interval == timedelta(seconds=90)
    assert web.volumes[2].tmpfs.mode == 0o1777
    assert web.entrypoint == []
    assert project.services["builder"].build.ulimits["nofile"].soft == 1024
    assert project.include[0].path == ["./other/compose.yaml"]


# --- the normalisation fixtures ----------------------------------------------------------------


@pytest.mark.parametrize("path", NORMALIZE, ids=lambda p: p.stem)
def test_normalize_expected_outputs_build_models(path):
    data = yaml.safe_load(path.read_text())
    if path.stem == "TestNormalizeImplicitDependencies__2":
        # The Go test builds `cgroup: service:bar`, which the spec and schema forbid (host|private).
        assert error_locs(data) == [("services", "test", "cgroup")]
        del data["services"]["test"]["cgroup"]
    project = from_compose_dict(data)
    dumped = to_compose_dict(project)
    assert_schema_valid(dumped)
    assert to_compose_dict(from_compose_dict(dumped)) == dumped
    assert dumped["name"] == "myProject"
    for name in project.services:
        assert dumped["services"][name].get("networks") == data["services"][name].get("networks")


def test_normalize_network_names():
    data = yaml.safe_load(
        (
            CORPUS / "compose-go/inline/loader/normalize/TestNormalizeNetworkNames__2.yaml"
        ).read_text()
    )
    project = from_compose_dict(data)
    assert project.networks["myExternalnet"].external is True
    assert project.networks["myNamedNet"].name == "CustomName"
    assert project.services["foo"].build.args == {"FOO": "BAR"}
    assert to_compose_dict(project) == data


def test_normalize_environment_list_reads_as_map():
    data = yaml.safe_load(
        (CORPUS / "compose-go/inline/loader/normalize/TestNormalizeEnvironment__2.yaml").read_text()
    )
    env = from_compose_dict(data).services["test"].environment
    assert env == {"FOO": None, "BAR": "bar", "ZOT": "QIX"}


def test_normalize_depends_on():
    data = yaml.safe_load(
        (CORPUS / "compose-go/inline/loader/normalize/TestNormalizeDependsOn__2.yaml").read_text()
    )
    project = from_compose_dict(data)
    assert to_compose_dict(project) == data
    foo = project.services["foo"]
    assert foo.depends_on["bar"].condition == "service_healthy"
    assert foo.depends_on["zot"].restart is True
    assert foo.networks is None


# --- interpolated strings cast (NOTES section 6) ---------------------------------------------


def test_interpolated_strings_cast():
    project = from_compose_dict(
        {
            "services": {
                "web": {
                    "image": "x",
                    "deploy": {
                        "replicas": "555",
                        "update_config": {"parallelism": "555", "max_failure_ratio": "3.14"},
                        "rollback_config": {"max_failure_ratio": "3.14"},
                        "restart_policy": {"max_attempts": "555"},
                        "placement": {"max_replicas_per_node": "555"},
                        "resources": {"limits": {"cpus": "0.5", "pids": "555"}},
                    },
                    "healthcheck": {"retries": "555", "disable": "true"},
                    "ports": [{"target": "555", "published": 555}],
                    "ulimits": {"nproc": "555", "nofile": {"soft": "555", "hard": "556"}},
                    "shm_size": "2gb",
                    "stop_grace_period": "60s",
                    "secrets": [{"source": "super", "mode": "555"}],
                    "configs": [{"source": "conf", "mode": "0440"}],
                    "scale": "2",
                    "init": "true",
                    "privileged": "false",
                    "read_only": "yes",
                    "tty": "off",
                    "stdin_open": "TRUE",
                    "oom_kill_disable": "False",
                    "oom_score_adj": "-500",
                    "cpu_count": "2",
                    "cpu_percent": "50",
                    "cpus": "1.5",
                    "pids_limit": "-1",
                    "volumes": [
                        {
                            "type": "volume",
                            "source": "v",
                            "target": "/v",
                            "read_only": "true",
                            "volume": {"nocopy": "true"},
                        }
                    ],
                }
            },
            "networks": {"n": {"external": "true"}},
            "volumes": {"v": {"external": "true"}},
            "secrets": {"super": {"external": "true"}},
            "configs": {"conf": {"external": "false", "file": "./c"}},
        }
    )
    web = project.services["web"]
    assert web.deploy.replicas == 555
    assert web.deploy.update_config.parallelism == 555
    assert web.deploy.update_config.max_failure_ratio == pytest.approx(3.14)
    assert web.deploy.rollback_config.max_failure_ratio == pytest.approx(3.14)
    assert web.deploy.restart_policy.max_attempts == 555
    assert web.deploy.placement.max_replicas_per_node == 555
    assert web.deploy.resources.limits.pids == 555
    assert web.healthcheck.retries == 555
    assert web.healthcheck.disable is True
    assert web.ports[0].target == 555
    assert web.ports[0].published == "555"
    assert web.ulimits["nproc"].soft == 555
    assert to_compose_dict(project)["services"]["web"]["ulimits"]["nproc"] == 555
    assert (web.ulimits["nofile"].soft, web.ulimits["nofile"].hard) == (555, 556)
    assert web.shm_size == 2 * GIB
    assert web.stop_grace_period == timedelta(seconds=60)
    assert web.secrets[0].mode == 0o555
    assert web.configs[0].mode == 0o440
    assert web.scale == 2
    assert (web.init, web.privileged, web.read_only, web.tty) == (True, False, True, False)
    assert (web.stdin_open, web.oom_kill_disable, web.oom_score_adj) == (True, False, -500)
    assert (web.cpu_count, web.cpu_percent, web.cpus, web.pids_limit) == (2, 50, 1.5, -1)
    assert web.volumes[0].read_only is True
    assert web.volumes[0].volume.nocopy is True
    assert project.networks["n"].external is True
    assert project.volumes["v"].external is True
    assert project.secrets["super"].external is True
    assert project.configs["conf"].external is False
    assert_schema_valid(to_compose_dict(project))


def test_environment_map_values_become_strings():
    # NOTES section 4: numbers and booleans in the map form are strings; null stays null.
    case = json.loads((CORPUS / "compose-go/cases.json").read_text())["environment"]
    service = ServiceSpec.model_validate({"environment": case["expected"]})
    assert service.environment == case["expected"]
    service = ServiceSpec.model_validate({"environment": {"BAR": 2, "GA": 2.5, "ZO": None}})
    assert service.environment == {"BAR": "2", "GA": "2.5", "ZO": None}
    booleans = case["booleans"]
    assert (
        ServiceSpec.model_validate({"environment": booleans["input"]}).environment
        == booleans["expected"]
    )


def test_extra_hosts_cases():
    case = json.loads((CORPUS / "compose-go/cases.json").read_text())["extra_hosts"]["cases"][1]
    service = ServiceSpec.model_validate({"extra_hosts": case["expected"]})
    assert service.extra_hosts == case["expected"]
    assert ServiceSpec.model_validate({"extra_hosts": {"a": "1.2.3.4"}}).extra_hosts == {
        "a": ["1.2.3.4"]
    }


def test_port_list_case_builds():
    case = json.loads((CORPUS / "compose-go/cases.json").read_text())["port_list_in_file"]
    service = ServiceSpec.model_validate({"ports": case["expected"]})
    assert [p.model_dump(exclude_none=True, exclude={"extensions"}) for p in service.ports] == case[
        "expected"
    ]
    assert service.ports[-1].mode == "host"


# --- short forms the model reads itself -------------------------------------------------------


def test_string_or_list_and_short_forms():
    service = ServiceSpec.model_validate(
        {
            "dns": "8.8.8.8",
            "dns_search": "example.com",
            "tmpfs": "/run",
            "label_file": "./l",
            "labels": ["a=b", "empty"],
            "build": "./dir",
            "extends": "base",
            "gpus": "all",
            "models": ["llm"],
            "secrets": ["token"],
            "env_file": [".env"],
            "sysctls": ["net.core.somaxconn=1024"],
            "develop": {"watch": [{"path": ".", "action": "sync", "ignore": "tmp"}]},
        }
    )
    assert service.dns == ["8.8.8.8"]
    assert service.dns_search == ["example.com"]
    assert service.tmpfs == ["/run"]
    assert service.label_file == ["./l"]
    assert service.labels == {"a": "b", "empty": ""}
    assert service.build.context == "./dir"
    assert service.extends.service == "base"
    assert service.gpus[0].count == ALL_DEVICES
    assert service.models == {"llm": None}
    assert service.secrets[0].source == "token"
    assert service.secrets[0].target is None
    assert service.env_file[0].required is True
    assert service.sysctls == {"net.core.somaxconn": "1024"}
    assert service.develop.watch[0].ignore == ["tmp"]
    project = ComposeProject(services={"s": service}, include=["./other.yaml"])
    assert project.include[0].path == ["./other.yaml"]
    assert_schema_valid(to_compose_dict(project))


def test_labels_numbers_and_null():
    service = ServiceSpec.model_validate({"labels": {"n": 42, "f": 1.5, "b": True, "e": None}})
    assert service.labels == {"n": "42", "f": "1.5", "b": "true", "e": ""}


def test_defaults():
    port = ServiceSpec.model_validate({"ports": [{"target": 80}]}).ports[0]
    assert (port.protocol, port.mode, port.published) == ("tcp", "ingress", None)
    dep = ServiceSpec.model_validate(
        {"depends_on": {"db": {"condition": "service_healthy"}}}
    ).depends_on["db"]
    assert (dep.required, dep.restart) == (True, False)
    assert ComposeProject().services == {}
    assert to_compose_dict(ComposeProject(name="p")) == {"name": "p"}


# --- errors: loc equals the Compose key path -------------------------------------------------


BAD_VALUES = [
    (("services", "web", "deploy", "replicas"), "many"),
    (("services", "web", "deploy", "replicas"), -1),
    (("services", "web", "scale"), -1),
    (("services", "web", "scale"), "two"),
    (("services", "web", "healthcheck", "retries"), "x"),
    (("services", "web", "healthcheck", "disable"), "maybe"),
    (("services", "web", "healthcheck", "interval"), "10"),
    (("services", "web", "healthcheck", "timeout"), "soon"),
    (("services", "web", "healthcheck", "test"), 5),
    (("services", "web", "deploy", "update_config", "max_failure_ratio"), "pi"),
    (("services", "web", "deploy", "update_config", "order"), "whenever"),
    (("services", "web", "deploy", "update_config", "delay"), "1y"),
    (("services", "web", "deploy", "restart_policy", "window"), 5),
    (("services", "web", "deploy", "resources", "limits", "memory"), "lots"),
    (("services", "web", "deploy", "resources", "limits", "cpus"), "fast"),
    (
        ("services", "web", "deploy", "resources", "reservations", "devices", 0, "count"),
        "some_string",
    ),
    (("services", "web", "ports", 0, "target"), "http"),
    (("services", "web", "ports", 0, "target"), 70000),
    (("services", "web", "ports", 0, "published"), [1]),
    (("services", "web", "volumes", 0, "type"), "nfs"),
    (("services", "web", "volumes", 0, "tmpfs", "size"), -1),
    (("services", "web", "volumes", 0, "tmpfs", "size"), "big"),
    (("services", "web", "volumes", 0, "bind", "selinux"), "q"),
    (("services", "web", "secrets", 0, "mode"), "0999"),
    (("services", "web", "configs", 0, "mode"), "rw"),
    (("services", "web", "ulimits", "nproc"), "lots"),
    (("services", "web", "ulimits", "nofile", "soft"), "x"),
    (("services", "web", "shm_size"), "12xb"),
    (("services", "web", "mem_limit"), True),
    (("services", "web", "memswap_limit"), "-1g"),
    (("services", "web", "stop_grace_period"), "forever"),
    (("services", "web", "cpu_percent"), 101),
    (("services", "web", "cpu_count"), -1),
    (("services", "web", "oom_score_adj"), 1001),
    (("services", "web", "cpu_rt_runtime"), "1x"),
    (("services", "web", "cgroup"), "shared"),
    (("services", "web", "init"), "perhaps"),
    (("services", "web", "environment", "FOO"), ["1"]),
    (("services", "web", "labels", "a"), {"b": 1}),
    (("services", "web", "depends_on", "db", "condition"), "service_ready"),
    (("services", "web", "depends_on", "db", "required"), "sometimes"),
    (("services", "web", "networks", "front", "aliases"), "x"),
    (("services", "web", "gpus", 0, "count"), "many"),
    (("services", "web", "blkio_config", "weight"), 5),
    (("services", "web", "blkio_config", "device_read_bps", 0, "rate"), "fast"),
    (("services", "web", "build", "shm_size"), "huge"),
    (("services", "web", "build", "ulimits", "nofile"), "x"),
    (("services", "web", "provider", "options", "o"), {"nested": 1}),
    (("services", "web", "develop", "watch", 0, "action"), "explode"),
    (("services", "web", "env_file", 0, "required"), "perhaps"),
    (("services", "web", "command"), "echo hi"),
    (("networks", "n", "internal"), "perhaps"),
    (("networks", "n", "driver_opts", "o"), [1]),
    (("volumes", "v", "external"), "perhaps"),
    (("models", "m", "context_size"), "big"),
    (("name",), 123),
]


@pytest.mark.parametrize(("path", "value"), BAD_VALUES, ids=lambda x: str(x))
def test_garbage_fails_at_its_compose_path(path, value):
    data = nested(path, value)
    # required siblings, so the only error is the one under test
    if "ports" in path and path[-1] != "target":
        data["services"]["web"]["ports"][0]["target"] = 80
    if "volumes" in path and path[0] == "services" and path[-1] != "type":
        data["services"]["web"]["volumes"][0]["type"] = "tmpfs"
    if "devices" in path:
        data["services"]["web"]["deploy"]["resources"]["reservations"]["devices"][0][
            "capabilities"
        ] = ["gpu"]
    if "secrets" in path or "configs" in path:
        data["services"]["web"][path[2]][0]["source"] = "s"
    if "watch" in path:
        data["services"]["web"]["develop"]["watch"][0]["path"] = "."
    if "ulimits" in path and path[-1] == "soft":
        data["services"]["web"]["ulimits"]["nofile"]["hard"] = 1
    if "env_file" in path:
        data["services"]["web"]["env_file"][0]["path"] = ".env"
    if "provider" in path:
        data["services"]["web"]["provider"]["type"] = "t"
    if path[0] == "models":
        data["models"]["m"]["model"] = "ai/x"
    assert error_locs(data) == [path]


@pytest.mark.parametrize(
    "path",
    [
        ("imagee",),
        ("services", "web", "imagee"),
        ("services", "web", "deploy", "replica"),
        ("services", "web", "deploy", "resources", "impossible"),
        ("services", "web", "deploy", "resources", "limits", "memroy"),
        ("services", "web", "healthcheck", "intervall"),
        ("services", "web", "build", "dockerfil"),
        ("services", "web", "blkio_config", "x-not-allowed-here"),
        ("services", "web", "extends", "x-no"),
        ("services", "web", "env_file", 0, "x-no"),
        ("services", "web", "ports", 0, "hostip"),
        ("services", "web", "volumes", 0, "bind", "create_hostpath"),
        ("services", "web", "depends_on", "db", "restar"),
        ("services", "web", "networks", "front", "alias"),
        ("networks", "n", "ipam", "config", 0, "subnett"),
        ("volumes", "v", "labelz"),
        ("secrets", "s", "content"),  # the schema has no inline content for secrets
        ("configs", "c", "filee"),
        ("models", "m", "runtime"),
        ("include", 0, "paths"),
    ],
    ids=lambda p: ".".join(map(str, p)),
)
def test_unknown_keys_are_errors_at_their_path(path):
    data = nested(path, "oops")
    if "ports" in path:
        data["services"]["web"]["ports"][0]["target"] = 80
    if "volumes" in path and path[0] == "services":
        data["services"]["web"]["volumes"][0]["type"] = "bind"
    if "depends_on" in path:
        data["services"]["web"]["depends_on"]["db"]["condition"] = "service_started"
    if "env_file" in path:
        data["services"]["web"]["env_file"][0]["path"] = ".env"
    if "extends" in path:
        data["services"]["web"]["extends"]["service"] = "base"
    if path[0] == "models":
        data["models"]["m"]["model"] = "ai/x"
    with pytest.raises(ValidationError) as info:
        ComposeProject.model_validate(data)
    errors = info.value.errors()
    assert [(e["loc"], e["type"]) for e in errors] == [(path, "extra_forbidden")]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (("services", "web", "ports", 0), "target"),
        (("services", "web", "volumes", 0), "type"),
        (("services", "web", "secrets", 0), "source"),
        (("services", "web", "devices", 0), "source"),
        (("services", "web", "post_start", 0), "command"),
        (("services", "web", "provider"), "type"),
        (("services", "web", "deploy", "resources", "reservations", "devices", 0), "capabilities"),
        (("services", "web", "develop", "watch", 0), "path"),
        (("models", "m"), "model"),
    ],
)
def test_missing_required_key(path, key):
    data = nested(path, {"x-keep": 1} if key != "path" else {"action": "sync"})
    assert error_locs(data) == [(*path, key)]


def test_several_errors_keep_their_own_paths():
    locs = error_locs(
        {
            "services": {
                "a": {"deploy": {"replicas": "x"}, "ports": [{"target": 80}, {"target": "y"}]},
                "b": {"healthcheck": {"interval": "z"}},
            }
        }
    )
    assert sorted(locs, key=str) == sorted(
        [
            ("services", "a", "deploy", "replicas"),
            ("services", "a", "ports", 1, "target"),
            ("services", "b", "healthcheck", "interval"),
        ],
        key=str,
    )


# --- rules checked on an object (loc is the object's path) -----------------------------------


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        (kind, key)
        for kind in ("volumes", "networks", "secrets", "configs")
        for key in ("driver", "driver_opts", "labels")
        if not (kind == "configs" and key.startswith("driver"))  # configs have no driver
    ],
)
def test_external_with_other_keys_conflicts(kind, key):
    value = {"driver": "foobar", "driver_opts": {"beep": "boop"}, "labels": {"a": "b"}}[key]
    with pytest.raises(ValidationError) as info:
        ComposeProject.model_validate({kind: {"external_thing": {"external": True, key: value}}})
    (error,) = info.value.errors()
    assert error["loc"] == (kind, "external_thing")
    assert f'conflicting parameters "external" and "{key}" specified' in error["msg"]


def test_external_allows_name_and_extensions():
    project = ComposeProject.model_validate(
        {"volumes": {"v": {"external": True, "name": "real", "x-note": 1}}}
    )
    assert project.volumes["v"].name == "real"


@pytest.mark.parametrize("kind", ["volumes", "networks", "secrets", "configs"])
def test_external_name_conflicts_with_name(kind):
    with pytest.raises(ValidationError) as info:
        ComposeProject.model_validate({kind: {"r": {"name": "a", "external": {"name": "b"}}}})
    (error,) = info.value.errors()
    assert error["loc"] == (kind, "r")
    assert "name and external.name conflict; only use name" in error["msg"]


def test_device_count_and_ids_are_exclusive():
    with pytest.raises(ValidationError) as info:
        ServiceSpec.model_validate(
            {
                "deploy": {
                    "resources": {
                        "reservations": {
                            "devices": [{"capabilities": ["gpu"], "count": 2, "device_ids": ["0"]}]
                        }
                    }
                }
            }
        )
    (error,) = info.value.errors()
    assert error["loc"] == ("deploy", "resources", "reservations", "devices", 0)
    assert '"count" and "device_ids" attributes are exclusive' in error["msg"]


def test_device_count_values():
    def count(value):
        service = ServiceSpec.model_validate(
            {
                "deploy": {
                    "resources": {
                        "reservations": {"devices": [{"capabilities": ["gpu"], "count": value}]}
                    }
                }
            }
        )
        return service.deploy.resources.reservations.devices[0].count

    assert count("all") == ALL_DEVICES
    assert count("1") == 1
    assert count(2) == 2
    with pytest.raises(ValidationError, match="the only value allowed is 'all' or a number"):
        count("some_string")


def test_null_network_and_volume_are_empty_specs():
    project = ComposeProject.model_validate({"networks": {"n": None}, "volumes": {"v": None}})
    assert project.networks["n"] == NetworkSpec()
    assert project.volumes["v"] == VolumeSpec()
    assert error_locs({"secrets": {"s": None}}) == [("secrets", "s")]


# --- extensions ------------------------------------------------------------------------------


def test_extensions_at_every_level_round_trip():
    data = {
        "services": {
            "x-svc": {  # a service may be called x-foo: it is a service, not an extension
                "image": "i",
                "x-s": 1,
                "build": {"context": ".", "x-b": 2},
                "deploy": {"x-d": 3, "resources": {"x-r": 4, "limits": {"x-l": 5}}},
                "ports": [{"target": 80, "protocol": "tcp", "mode": "ingress", "x-p": 6}],
                "ulimits": {"nofile": {"soft": 1, "hard": 2, "x-u": 7}},
                "depends_on": {
                    "db": {
                        "condition": "service_started",
                        "required": True,
                        "restart": False,
                        "x-dep": 8,
                    }
                },
                "networks": {"n": {"x-n": 9}},
                "healthcheck": {"x-h": 10},
                "volumes": [
                    {"type": "bind", "source": ".", "target": "/t", "bind": {"x-bi": 11}, "x-v": 12}
                ],
            }
        },
        "networks": {"n": {"x-net": 13, "ipam": {"x-i": 14, "config": [{"x-c": 15}]}}},
        "x-top": {"nested": {"x-not-collected": 16}},
    }
    project = ComposeProject.model_validate(copy.deepcopy(data))
    service = project.services["x-svc"]
    assert service.extensions == {"x-s": 1}
    assert service.ports[0].extensions == {"x-p": 6}
    assert project.extensions == {"x-top": {"nested": {"x-not-collected": 16}}}
    dumped = to_compose_dict(project)
    assert dumped == data
    assert_schema_valid(dumped)


def test_extension_keys_must_start_with_x():
    with pytest.raises(ValidationError):
        ServiceSpec(extensions={"nope": 1})
    assert ServiceSpec(extensions={"x-ok": 1}).model_dump(exclude_none=True) == {"x-ok": 1}


# --- the model is complete against the schema -------------------------------------------------


def _defs(*path):
    node = SCHEMA_DOC
    for key in path:
        node = node[key]
    return node


MODEL_SCHEMAS = [
    (cm.ComposeProject, ()),
    (cm.ServiceSpec, ("$defs", "service")),
    (cm.BuildSpec, ("$defs", "service", "properties", "build", "oneOf", 1)),
    (cm.BlkioConfig, ("$defs", "service", "properties", "blkio_config")),
    (cm.BlkioLimit, ("$defs", "blkio_limit")),
    (cm.BlkioWeight, ("$defs", "blkio_weight")),
    (cm.CredentialSpec, ("$defs", "service", "properties", "credential_spec")),
    (
        cm.DependsOnSpec,
        (
            "$defs",
            "service",
            "properties",
            "depends_on",
            "oneOf",
            1,
            "patternProperties",
            "^[a-zA-Z0-9._-]+$",
        ),
    ),
    (cm.DeviceMapping, ("$defs", "service", "properties", "devices", "items", "oneOf", 1)),
    (cm.ExtendsSpec, ("$defs", "service", "properties", "extends", "oneOf", 1)),
    (cm.ProviderSpec, ("$defs", "service", "properties", "provider")),
    (cm.LoggingSpec, ("$defs", "service", "properties", "logging")),
    (
        cm.ServiceModelSpec,
        (
            "$defs",
            "service",
            "properties",
            "models",
            "oneOf",
            1,
            "patternProperties",
            "^[a-zA-Z0-9._-]+$",
            "oneOf",
            0,
        ),
    ),
    (
        cm.ServiceNetworkSpec,
        (
            "$defs",
            "service",
            "properties",
            "networks",
            "oneOf",
            1,
            "patternProperties",
            "^[a-zA-Z0-9._-]+$",
            "oneOf",
            0,
        ),
    ),
    (cm.PortSpec, ("$defs", "service", "properties", "ports", "items", "oneOf", 2)),
    (cm.VolumeMount, ("$defs", "service", "properties", "volumes", "items", "oneOf", 1)),
    (
        cm.BindOptions,
        ("$defs", "service", "properties", "volumes", "items", "oneOf", 1, "properties", "bind"),
    ),
    (
        cm.VolumeOptions,
        ("$defs", "service", "properties", "volumes", "items", "oneOf", 1, "properties", "volume"),
    ),
    (
        cm.TmpfsOptions,
        ("$defs", "service", "properties", "volumes", "items", "oneOf", 1, "properties", "tmpfs"),
    ),
    (
        cm.ImageOptions,
        ("$defs", "service", "properties", "volumes", "items", "oneOf", 1, "properties", "image"),
    ),
    (cm.HealthcheckSpec, ("$defs", "healthcheck")),
    (cm.DevelopSpec, ("$defs", "development")),
    (cm.WatchRule, ("$defs", "development", "properties", "watch", "items")),
    (cm.DeploySpec, ("$defs", "deployment")),
    (cm.UpdateConfig, ("$defs", "deployment", "properties", "update_config")),
    (cm.UpdateConfig, ("$defs", "deployment", "properties", "rollback_config")),
    (cm.Resources, ("$defs", "deployment", "properties", "resources")),
    (cm.ResourceLimits, ("$defs", "deployment", "properties", "resources", "properties", "limits")),
    (
        cm.ResourceReservations,
        ("$defs", "deployment", "properties", "resources", "properties", "reservations"),
    ),
    (cm.RestartPolicy, ("$defs", "deployment", "properties", "restart_policy")),
    (cm.Placement, ("$defs", "deployment", "properties", "placement")),
    (
        cm.PlacementPreference,
        ("$defs", "deployment", "properties", "placement", "properties", "preferences", "items"),
    ),
    (cm.GenericResource, ("$defs", "generic_resources", "items")),
    (
        cm.DiscreteResourceSpec,
        ("$defs", "generic_resources", "items", "properties", "discrete_resource_spec"),
    ),
    (cm.DeviceReservation, ("$defs", "devices", "items")),
    (cm.DeviceRequest, ("$defs", "gpus", "oneOf", 1, "items")),
    (cm.IncludeSpec, ("$defs", "include", "oneOf", 1)),
    (cm.NetworkSpec, ("$defs", "network")),
    (cm.IpamSpec, ("$defs", "network", "properties", "ipam")),
    (cm.IpamPool, ("$defs", "network", "properties", "ipam", "properties", "config", "items")),
    (cm.VolumeSpec, ("$defs", "volume")),
    (cm.SecretSpec, ("$defs", "secret")),
    (cm.ConfigSpec, ("$defs", "config")),
    (cm.ModelSpec, ("$defs", "model")),
    (cm.ServiceHook, ("$defs", "service_hook")),
    (cm.PreStartHook, ("$defs", "pre_start_hook")),
    (cm.FileReference, ("$defs", "service_config_or_secret", "items", "oneOf", 1)),
    (cm.Ulimit, ("$defs", "ulimits", "patternProperties", "^[a-z]+$", "oneOf", 1)),
    (cm.EnvFileSpec, ("$defs", "env_file", "oneOf", 1, "items", "oneOf", 1)),
]


# Deliberate differences: a port without `target` or a file reference without `source` means
# nothing; a `depends_on` entry without `condition` waits for `service_started` (the list form's
# meaning, as compose-go fills it).
MORE_REQUIRED = {cm.PortSpec: {"target"}, cm.FileReference: {"source"}}
LESS_REQUIRED = {cm.DependsOnSpec: {"condition"}}


@pytest.mark.parametrize(("model", "path"), MODEL_SCHEMAS, ids=lambda x: getattr(x, "__name__", ""))
def test_model_fields_equal_schema_properties(model, path):
    node = _defs(*path)
    fields = set(model.model_fields) - {"extensions"}
    assert fields == set(node["properties"])
    # `x-*` keys are collected exactly where the schema allows them (the gpus item schema puts
    # its `^x-` pattern on the array by mistake; its items are the same device request).
    allows_x = "^x-" in node.get("patternProperties", {}) or model is cm.DeviceRequest
    assert ("extensions" in model.model_fields) == allows_x
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    assert required == (set(node.get("required", [])) | MORE_REQUIRED.get(model, set())) - (
        LESS_REQUIRED.get(model, set())
    )


def test_every_exported_model_is_checked_against_the_schema():
    checked = {model for model, _ in MODEL_SCHEMAS}
    exported = {
        obj
        for name in cm.__all__
        if isinstance(obj := getattr(cm, name), type) and issubclass(obj, BaseModel)
    }
    assert exported == checked


def test_model_package_imports_only_itself():
    root = Path(shoal.model.__file__).parent
    for source in root.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shoal"):
                assert node.module.startswith("shoal.model"), (source.name, node.module)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("shoal") or alias.name.startswith(
                        "shoal.model"
                    )


# --- robustness and speed --------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12)
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=5), SCALARS, max_size=3),
)
FIELDS = [
    ("deploy", "replicas"),
    ("healthcheck", "interval"),
    ("shm_size",),
    ("ulimits", "nofile"),
    ("ports",),
    ("volumes",),
    ("environment",),
    ("secrets",),
    ("gpus",),
    ("networks",),
    ("depends_on",),
    ("build",),
    ("extra_hosts",),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), VALUES)
def test_any_value_validates_or_raises_validation_error(path, value):
    try:
        ServiceSpec.model_validate(nested(path, value))
    except ValidationError as exc:
        for error in exc.errors():
            assert error["loc"][: len(path)] == path[: len(error["loc"])]


def test_construction_is_fast():
    documents = [copy.deepcopy(FULL_CANONICAL) for _ in range(39)]
    start = time.perf_counter()
    for document in documents:
        to_compose_dict(from_compose_dict(document))
    elapsed = time.perf_counter() - start
    assert elapsed < 0.3, f"39 full-example projects took {elapsed:.3f}s"
