"""YAML → Plan, with every error named by file, line and key path.

The YAML is composed into nodes first so that each key path keeps the line it came from;
pydantic's error locations are then mapped back onto those lines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .schema import Plan, cross_references

DEFAULT_PLAN_NAME = "<embedded default.yaml>"


@dataclass(frozen=True)
class PlanError:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PlanInvalid(Exception):
    def __init__(self, errors: list[PlanError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def user_data_dir() -> Path:
    """Where the embedded default plan keeps its database and recordings: ``$XDG_DATA_HOME/
    centralino``, else ``~/.local/share/centralino`` (never the current directory: a first run
    from a source checkout must not write into it)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser().resolve() / "centralino"


@dataclass(frozen=True)
class LoadedPlan:
    plan: Plan
    source: str  # the file name, or DEFAULT_PLAN_NAME
    text: str
    base_dir: Path | None = None  # relative paths of the plan (storage, recordings, prompts) start here
    lines: dict[tuple, int] = field(default_factory=dict, repr=False, compare=False)

    def line_of(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def errors_for(self, found: list[tuple[tuple, str]]) -> list[PlanError]:
        """(key path, message) pairs found after loading, with this plan's file and lines."""
        return [PlanError(self.source, self.line_of(p), format_path(p), m) for p, m in found]


def resolve_path(value: str, base: Path | None) -> str:
    """'sqlite:rel.db' / 'rel/dir' against ``base``; absolute paths, ':memory:' and a missing
    base are left as they are."""
    from ..storage.database import storage_path

    raw = storage_path(value)
    prefix = value[: len(value) - len(raw)]
    if base is None or raw in ("", ":memory:") or Path(raw).expanduser().is_absolute():
        return prefix + str(Path(raw).expanduser()) if raw not in ("", ":memory:") else value
    if prefix == "sqlite://":
        prefix = "sqlite:"  # 'sqlite://rel' has no absolute form of its own
    return prefix + str(base / raw)


def _with_paths(plan: Plan, base: Path | None, inputs: Path | None = None) -> Plan:
    """Relative paths against ``base``; the files the plan reads (leads, do-not-call lists)
    against ``inputs`` when given (the embedded default's demo files ship beside it)."""
    if base is None:
        return plan
    inputs = inputs or base
    server = plan.server
    server = server.model_copy(update={
        "storage": resolve_path(server.storage, base),
        "recordings": resolve_path(server.recordings, base),
        "prompts": [resolve_path(d, base) for d in server.prompts],
    })
    campaigns = {name: c.model_copy(update={
        "leads": resolve_path(c.leads, inputs) if c.leads else None,
        "dnc": [resolve_path(d, inputs) for d in c.dnc]}) for name, c in plan.campaigns.items()}
    return plan.model_copy(update={"server": server, "campaigns": campaigns})


def format_path(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _to_python(loader: yaml.SafeLoader, node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (int, float, bool)) and not isinstance(key, bool):
                key = key_node.value  # menu digits and extension numbers are names, not numbers
            elif isinstance(key, bool) or key is None:
                key = key_node.value
            child = (*path, key)
            lines[child] = key_node.start_mark.line + 1
            if key in out:
                raise PlanInvalid([PlanError("", key_node.start_mark.line + 1, format_path(child), "duplicate key")])
            out[key] = _to_python(loader, value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(loader, item, (*path, i), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_plan_text(text: str, source: str, base_dir: Path | None = None, inputs_dir: Path | None = None) -> LoadedPlan:
    """Validate a plan's text; raises PlanInvalid listing every error. Relative paths in it
    are taken from ``base_dir`` (None: the current directory), those of files it only reads
    from ``inputs_dir`` if given."""
    lines: dict[tuple, int] = {}
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = {} if node is None else _to_python(loader, node, (), lines)
        finally:
            loader.dispose()
    except PlanInvalid as exc:
        raise PlanInvalid([PlanError(source, e.line, e.path, e.message) for e in exc.errors]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanInvalid([PlanError(source, line, "", f"YAML syntax error: {problem}")]) from None
    if not isinstance(data, dict):
        raise PlanInvalid([PlanError(source, 1, "", "the plan must be a mapping of sections")])

    def line_of(path: tuple) -> int | None:
        while path:
            if path in lines:
                return lines[path]
            path = path[:-1]
        return lines.get(())

    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            # drop pydantic's union/type tags from the location ('function-after[...]', 'str')
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in ("str", "list[str]", "int"))))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            errors.append(PlanError(source, line_of(loc), format_path(loc), msg))
        # one message per key path is enough (unions repeat themselves)
        seen: set[tuple[str, str]] = set()
        unique = []
        for e in errors:
            if (e.path, e.message) not in seen:
                seen.add((e.path, e.message))
                unique.append(e)
        raise PlanInvalid(unique) from None
    plan = _with_paths(plan, base_dir, inputs_dir)
    cross = cross_references(plan)
    if cross:
        raise PlanInvalid([PlanError(source, line_of(p), format_path(p), m) for p, m in cross])
    return LoadedPlan(plan, source, text, base_dir, lines)


def load_plan(path: str | Path | None) -> LoadedPlan:
    """Load a plan file, or the embedded default plan when ``path`` is None."""
    if path is None:
        packaged = resources.files("centralino.config")
        text = packaged.joinpath("default.yaml").read_text("utf-8")
        return parse_plan_text(text, DEFAULT_PLAN_NAME, user_data_dir(), Path(str(packaged)))
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise PlanInvalid([PlanError(str(p), None, "", f"cannot read: {exc.strerror}")]) from None
    return parse_plan_text(text, str(p), p.expanduser().resolve().parent)
