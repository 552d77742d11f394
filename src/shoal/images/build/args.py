"""Build arguments: `ARG` declarations, `--build-arg` values and the predefined platform args.

ARGs before the first FROM are global and visible only to FROM lines, unless a stage declares
them again (`ARG NAME` without a value takes the global one). A `--build-arg` overrides a
declared default; one that no ARG consumes earns a warning, as Docker gives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shoal.images.build.parser import Instruction
from shoal.images.build.words import split_words
from shoal.images.manifest import host_arch

_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def predefined() -> dict[str, str]:
    arch = host_arch()
    values = {"TARGETOS": "linux", "TARGETARCH": arch, "BUILDOS": "linux", "BUILDARCH": arch}
    values.update(TARGETPLATFORM=f"linux/{arch}", BUILDPLATFORM=f"linux/{arch}")
    return values


class ArgScope:
    def __init__(self, build_args: Mapping[str, str]) -> None:
        self.build_args = dict(build_args)
        self.global_args: dict[str, str] = {}
        self.predefined = predefined()
        self.used: set[str] = set()

    def from_env(self) -> dict[str, str]:
        """What a FROM line may substitute: predefined and global args."""
        return {**self.predefined, **self.global_args}

    def declare(
        self, inst: Instruction, into: dict[str, str], env: Mapping[str, str], escape: str
    ) -> None:
        """Evaluate `ARG a=1 b` into `into` (a stage's args, or the global ones)."""
        for word in split_words(inst.args, {**self.global_args, **env}, escape):
            name, sep, default = word.partition("=")
            if not _ARG_NAME.fullmatch(name):
                raise inst.error(f"invalid ARG name {name!r}", hint="ARG NAME or ARG NAME=default")
            if name in self.build_args:
                self.used.add(name)
                into[name] = self.build_args[name]
            elif sep:
                into[name] = default
            elif name in self.global_args:
                into[name] = self.global_args[name]
            elif name in self.predefined:
                into[name] = self.predefined[name]

    def unused(self) -> list[str]:
        return sorted(set(self.build_args) - self.used)

    @staticmethod
    def cache_text(inst: Instruction, values: Mapping[str, str]) -> str:
        """The ARG as its resolved values, so a different --build-arg misses the cache."""
        names = [w.partition("=")[0] for w in inst.args.split()]
        return "ARG " + " ".join(f"{n}={values.get(n, '')}" for n in names)
