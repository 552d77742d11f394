"""Base classes and shared field types for the Compose model.

Every Compose object is a `ComposeModel`: unknown keys are errors, so a typo reaches the user.
Objects whose schema allows `x-*` keys are `ExtensibleModel`s: those keys are kept in
`extensions` and written back as `x-*` keys when dumped.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from shoal.model.units import StrValue, to_str_value

EXTENSION_PREFIX = "x-"


class ComposeModel(BaseModel):
    """A Compose object. Field names are the Compose keys; `None` means "not written"."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=False,
        # Compose has a top-level `models` key and `ModelSpec.model`; nothing here is pydantic's.
        protected_namespaces=(),
    )


class ExtensibleModel(ComposeModel):
    """A Compose object that may carry `x-*` extension keys."""

    extensions: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_extensions(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if not any(isinstance(k, str) and k.startswith(EXTENSION_PREFIX) for k in data):
            return data
        given = data.get("extensions") or {}
        if not isinstance(given, dict):
            return data  # the `extensions` field reports it
        extensions = dict(given)
        rest: dict[Any, Any] = {}
        for key, value in data.items():
            if isinstance(key, str) and key.startswith(EXTENSION_PREFIX):
                extensions[key] = value
            elif key != "extensions":
                rest[key] = value
        rest["extensions"] = extensions
        return rest

    @field_validator("extensions")
    @classmethod
    def _extension_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key.startswith(EXTENSION_PREFIX):
                raise ValueError(f"extension key {key!r} must start with {EXTENSION_PREFIX!r}")
        return value

    @model_serializer(mode="wrap")
    def _restore_extensions(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            extensions = data.pop("extensions", None)
            if extensions:
                data.update(extensions)
        return data


class ExternalResource(ExtensibleModel):
    """A top-level volume, network, secret or config: something that may be `external`."""

    # Volumes and networks may be written as a bare key (`mynet:`), i.e. null.
    _null_means_empty: ClassVar[bool] = False

    name: str | None = None
    external: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_external(cls, data: Any) -> Any:
        if data is None and cls._null_means_empty:
            return {}
        if not isinstance(data, dict) or not isinstance(data.get("external"), dict):
            return data
        # `external: {name: N}` is the deprecated spelling of `name: N` + `external: true`.
        legacy = {k: v for k, v in data["external"].items() if not str(k).startswith("x-")}
        legacy_name = legacy.pop("name", None)
        if legacy:
            raise ValueError(f"external: unknown keys {sorted(map(str, legacy))}")
        out = {**data, "external": True}
        if legacy_name is not None:
            if data.get("name") not in (None, legacy_name):
                raise ValueError("name and external.name conflict; only use name")
            out["name"] = legacy_name
        return out

    @model_validator(mode="after")
    def _external_stands_alone(self) -> Self:
        if self.external:
            for field in type(self).model_fields:
                if field in ("name", "external", "extensions"):
                    continue
                if getattr(self, field) is not None:
                    raise ValueError(f'conflicting parameters "external" and "{field}" specified')
        return self


def _split_list(value: Any, bare: str | None) -> Any:
    """`["K=V", "K"]` → `{"K": "V", "K": bare}`; anything else unchanged."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return value
    out: dict[str, str | None] = {}
    for item in value:
        key, sep, val = item.partition("=")
        out[key] = val if sep else bare
    return out


def _env_list(value: Any) -> Any:
    return _split_list(value, None)


def _label_list(value: Any) -> Any:
    return _split_list(value, "")


def _label_value(value: Any) -> Any:
    # A label written without a value (`com.example.empty:`) is the empty string.
    return "" if value is None else to_str_value(value)


def _str_to_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


LabelValue = Annotated[str, BeforeValidator(_label_value)]

EnvMapping = Annotated[dict[str, StrValue | None], BeforeValidator(_env_list)]
"""`list_or_dict` whose values may stay unset (`None`): environment, build args, ssh."""

LabelMapping = Annotated[dict[str, LabelValue], BeforeValidator(_label_list)]
"""`list_or_dict` of strings: labels, annotations, sysctls, options."""

StrMapping = dict[str, StrValue]
"""An object of scalar values read as strings: `driver_opts`, `storage_opt`."""

OptionMapping = dict[str, StrValue | None]
"""An object of scalar-or-null values read as strings: `logging.options`."""

StrList = Annotated[list[str], BeforeValidator(_str_to_list)]
"""`string_or_list`, always held as a list."""

HostMapping = dict[str, StrList]
"""`extra_hosts`: host name → addresses (a single address is read as a one-item list)."""
