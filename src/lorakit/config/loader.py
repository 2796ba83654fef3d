"""Loading a TrainSpec from layers: preset chain (``extends:``) → user YAML → ``--set``.

Every key remembers the layer that set it last, so an error can name the YAML file (or the
``--set`` argument) and the dotted path. All problems are reported together.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from lorakit.config import presets as preset_store
from lorakit.config.schema import OutputSection, TrainSpec
from lorakit.errors import ConfigError

META_KEYS = ("extends",)


@dataclass
class Layer:
    label: str  # file path or "--set a.b=c", shown in errors
    data: dict[str, Any]


@dataclass
class LoadedSpec:
    spec: TrainSpec
    layers: list[Layer]
    origin: dict[str, str] = field(default_factory=dict)  # dotted path -> layer label
    preset: str | None = None

    def base_dict(self) -> dict[str, Any]:
        """The merged data of the preset chain alone (what the user's layers changed)."""
        merged = merge_layers([layer for layer in self.layers if layer.label.startswith("preset:")])[0]
        merged.pop("extends", None)
        return with_default_paths(merged)


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (PyYAML keeps the last one
    silently: a second ``dim:`` would train with a value the user did not mean)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
                seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key `{key}` is repeated (first on line {first}); keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def strict_yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses repeated keys (see ``_StrictLoader``)."""
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"], fix="check the path given to --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read ({exc})"]) from None
    try:
        data = strict_yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}:{where}: not valid YAML: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of keys at the top, found {type(data).__name__}"])
    return data


def _layers_for_file(path: Path, label: str, seen: tuple[str, ...] = ()) -> list[Layer]:
    """A file's layers: what it ``extends`` (recursively) and then itself."""
    if label in seen:
        chain = " → ".join([*seen, label])
        raise ConfigError([f"{label}: `extends` loops back on itself ({chain})"])
    data = read_yaml(path)
    # a user's file: its relative paths are relative to the file; a shipped preset's (which
    # should hold no machine paths) to the folder lorakit runs in
    absolutize(data, Path.cwd() if label.startswith("preset:") else Path(os.path.abspath(path)).parent)
    parent = data.pop("extends", None)
    layers: list[Layer] = []
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError([f"{label}: extends: expected a preset name or a file path"])
        layers = _resolve_extends(parent, path.parent, (*seen, label))
    layers.append(Layer(label, data))
    return layers


def _resolve_extends(ref: str, base_dir: Path, seen: tuple[str, ...]) -> list[Layer]:
    as_file = (base_dir / ref).expanduser()
    if ref.endswith((".yaml", ".yml")) and as_file.is_file():
        return _layers_for_file(as_file, str(as_file), seen)
    return preset_layers(ref, seen)


def preset_layers(name: str, seen: tuple[str, ...] = ()) -> list[Layer]:
    path = preset_store.preset_path(name)
    return _layers_for_file(path, f"preset:{name}", seen)


def _schema_field(parts: list[str]) -> tuple[Any, str | None]:
    """The annotation of the field at ``parts`` (None when there is no such key), and a
    "did you mean" for the first part that is unknown."""
    model: type[BaseModel] | None = TrainSpec
    ann: Any = None
    for i, part in enumerate(parts):
        if model is None:
            # below a field that is not a model: only a free-form mapping (``network.args``) has keys
            return (ann, None) if get_origin(ann) is dict and i == len(parts) - 1 else (None, None)
        fields = {name: f for name, f in model.model_fields.items()}
        fields |= {f.alias: f for f in model.model_fields.values() if f.alias}
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            return None, ".".join([*parts[:i], close[0]]) if close else None
        ann = fields[part].annotation
        sub, is_list = _submodel(ann)
        model = sub if sub is not None and not is_list else None
    return ann, None


def _check_key(text: str, parts: list[str]) -> Any:
    ann, close = _schema_field(parts)
    if ann is None:
        hint = f" — did you mean `{close}`?" if close else ""
        raise ConfigError(
            [f"--set {text}: `{'.'.join(parts)}` is not a known setting{hint}"],
            fix="lorakit presets show NAME lists every key (docs/config-reference.md describes them)",
        )
    return ann


def parse_override(text: str) -> tuple[list[str], Any, bool]:
    """``a.b=value`` → (["a","b"], value, False); ``~a.b`` → (["a","b"], None, True).

    The key must exist in the schema (a typo must not be silently ignored) and the value must
    not be empty; a path key takes its value literally (a file name may hold ``#`` or ``: ``)."""
    if text.startswith("~"):
        key = text[1:].strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError([f"--set {text}: expected ~key.path"], fix="for example --set ~model.vae")
        _check_key(text, key.split("."))
        return key.split("."), None, True
    if "=" not in text:
        raise ConfigError([f"--set {text}: expected key.path=value"], fix="for example --set training.batch_size=2")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError([f"--set {text}: the key before '=' is empty or has an empty part"])
    parts = key.split(".")
    ann = _check_key(text, parts)
    if not raw.strip():
        raise ConfigError(
            [f"--set {text}: no value after '='"],
            fix=f"give a value (--set {key}=VALUE), or remove the key with --set ~{key}",
        )
    if _is_path_type(ann):
        return parts, raw.strip(), False
    try:
        value = strict_yaml_load(raw)
    except yaml.YAMLError as exc:
        if "is repeated" in str(getattr(exc, "problem", "")):
            raise ConfigError([f"--set {text}: {exc.problem}"]) from None  # type: ignore[attr-defined]
        value = raw
    return parts, value, False


def override_layer(text: str) -> Layer:
    path, value, delete = parse_override(text)
    data: dict[str, Any] = {}
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = _Delete() if delete else value
    return Layer(f"--set {text}", absolutize(data, Path.cwd()))


def data_layer(folder: Path) -> Layer:
    """``--data DIR``: the dataset folder, relative to the current folder."""
    return Layer(f"--data {folder}", absolutize({"dataset": {"folder": str(folder)}}, Path.cwd()))


def with_default_paths(merged: dict[str, Any]) -> dict[str, Any]:
    """The schema's relative default ``output.folder`` (``runs``) made absolute against the
    current folder, as if given there: a saved spec must not depend on where it is read."""
    out = merged.get("output")
    if out is None or isinstance(out, dict):
        out = dict(out or {})
        if "folder" not in out:
            out["folder"] = str(Path.cwd() / OutputSection.model_fields["folder"].default)
        merged["output"] = out
    return merged


def _is_path_type(ann: Any) -> bool:
    return ann is Path or (get_origin(ann) in (Union, types.UnionType) and any(a is Path for a in get_args(ann)))


def _is_path_list(ann: Any) -> bool:
    return get_origin(ann) is list and _is_path_type(get_args(ann)[0])


def _submodel(ann: Any) -> tuple[type[BaseModel] | None, bool]:
    """(model, is_list) when the annotation is a model or a list of models."""
    inner = get_args(ann)[0] if get_origin(ann) is list and get_args(ann) else None
    for cand, is_list in ((ann, False), (inner, True)):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand, is_list
    return None, False


def absolute_path(value: Any, base: Path) -> Any:
    """``~`` expanded, then made absolute against ``base``; anything not a path string stays as
    it is (the schema reports it)."""
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return value
    return os.path.abspath(os.path.join(base, os.path.expanduser(value)))


def absolutize(data: dict[str, Any], base: Path, model: type[BaseModel] = TrainSpec) -> dict[str, Any]:
    """Every path key of one layer's raw data (the schema's ``Path`` fields, at any depth, in
    lists too) made absolute against ``base``, in place. sd-scripts runs in its own folder and
    no shell expands ``~``, so a path must be absolute before it reaches the command."""
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    for key, value in data.items():
        info = fields.get(key)
        if info is None or isinstance(value, _Delete):
            continue
        ann = info.annotation
        if _is_path_type(ann):
            data[key] = absolute_path(value, base)
        elif _is_path_list(ann) and isinstance(value, list):
            data[key] = [absolute_path(v, base) for v in value]
        else:
            sub, is_list = _submodel(ann)
            if sub is None:
                continue
            if not is_list and isinstance(value, dict):
                absolutize(value, base, sub)
            elif is_list and isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        absolutize(item, base, sub)
    return data


class _Delete:
    """Marker: remove the key (``~key`` override)."""

    def __repr__(self) -> str:
        return "<delete>"


def merge_layers(layers: list[Layer]) -> tuple[dict[str, Any], dict[str, str]]:
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def walk(dst: dict[str, Any], src: Mapping[str, Any], prefix: str, label: str) -> None:
        for key, value in src.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, _Delete):
                dst.pop(key, None)
                origin[dotted] = label
            elif isinstance(value, Mapping) and isinstance(dst.get(key), dict):
                walk(dst[key], value, dotted + ".", label)
            elif isinstance(value, Mapping):
                dst[key] = {}
                origin[dotted] = label
                walk(dst[key], value, dotted + ".", label)
            else:
                dst[key] = value
                origin[dotted] = label

    for layer in layers:
        walk(merged, layer.data, "", layer.label)
    return merged, origin


def where(origin: dict[str, str], dotted: str) -> str:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        label = origin.get(".".join(parts[:i]))
        if label:
            return label
    return "defaults"


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at ``loc`` (None if not a model)."""
    model: type[BaseModel] = TrainSpec
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if info is None:
            return None
        ann = info.annotation
        inner = getattr(ann, "__args__", None)
        candidates = [ann, *(inner or ())]
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            return None
        model = sub
    return model


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _describe(err: Any, origin: dict[str, str]) -> str:
    loc = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc)
    source = where(origin, dotted)
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        names = _field_names(parent) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
        hint = f" — did you mean `{'.'.join([*map(str, loc[:-1]), close[0]])}`?" if close else ""
        allowed = f" Known keys here: {', '.join(names)}." if names and not close else ""
        return f"{source}: `{dotted}` is not a known setting{hint}{allowed}"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "literal_error":
        msg = msg.replace("Input should be", "must be one of:")
    return f"{source}: `{dotted}`: {msg}{shown}"


def validate(data: dict[str, Any], origin: dict[str, str]) -> TrainSpec:
    try:
        return TrainSpec.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e, origin) for e in exc.errors()]
        # A union (int | [w, h]) reports once per member; keep each message once.
        problems = list(dict.fromkeys(problems))
        raise ConfigError(problems, fix="correct the keys named above (lorakit presets show NAME lists them)") from None


def load_spec(
    preset: str | None = None,
    config: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    data: Path | None = None,
) -> LoadedSpec:
    """Preset chain, then the user's file (which may itself ``extends:`` a preset), then
    ``--data``, then --set. Every path comes out absolute (see ``absolutize``)."""
    layers: list[Layer] = []
    if preset:
        layers += preset_layers(preset)
    if config is not None:
        # the file may extend a preset of its own: that chain comes after --preset
        layers += _layers_for_file(config, str(config))
    if data is not None:
        layers.append(data_layer(data))
    layers += [override_layer(text) for text in overrides]
    merged, origin = merge_layers(layers)
    for key in META_KEYS:
        merged.pop(key, None)
    spec = validate(with_default_paths(merged), origin)
    preset_name = preset or next(
        (layer.label.removeprefix("preset:") for layer in layers if layer.label.startswith("preset:")), None
    )
    return LoadedSpec(spec=spec, layers=layers, origin=origin, preset=preset_name)
