"""Reading a YAML config file: safe loading, ``${ENV}`` secrets, and line numbers for errors.

Kept apart from the schema so that ``config.py`` says *what* a config is and this module says how
a file becomes one and how its mistakes are reported
(``router.config.yaml:12: models[2].max_model_len: expected an integer``).
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from turnout.core.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Loc = tuple[str | int, ...]


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse with the safe loader and keep the node tree for line lookups."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    return data, node


def expand_env(value: Any, loc: Loc = (), missing: list[Loc] | None = None) -> Any:
    """Replace ``${VAR}`` in every string with the environment's value.

    Names of unset variables are collected in ``missing`` (with where they were used) rather than
    raised one by one, so a user sees all of them at once. Values are never echoed.
    """
    if missing is None:
        missing = []
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                missing.append((*loc, f"${{{name}}}"))
                return ""
            return os.environ[name]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, (*loc, k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, (*loc, i), missing) for i, v in enumerate(value)]
    return value


def format_loc(loc: Sequence[str | int]) -> str:
    """``('models', 2, 'max_model_len')`` -> ``models[2].max_model_len``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the value (or, for the last key, the key) that ``loc`` points at."""
    if node is None:
        return None
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if key_node.value == part:
                    if part == loc[-1] and isinstance(value_node, yaml.MappingNode):
                        current = key_node
                    else:
                        current = value_node
                    break
            else:
                break
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(current.value):
                break
            current = current.value[part]
        else:
            break
    return int(current.start_mark.line) + 1


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """A ``did you mean 'x'?`` suffix when a close match exists, else the list of valid keys."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; valid keys: {', '.join(sorted(choices))}" if choices else ""


def located(source: str, node: Any, loc: Loc) -> str:
    """``file:line: `` for the key at ``loc`` (just ``file: `` without a node tree)."""
    line = line_of(node, loc)
    return f"{source}:{line}: " if line is not None else f"{source}: "


_MESSAGES = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "missing": "required key is missing",
}


def describe_error(err: Any, source: str, node: Any, root: type[BaseModel]) -> str:
    """One pydantic error as ``file:line: key: message``, unknown keys with a did-you-mean."""
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        hint = did_you_mean(key, sorted(_fields_at(loc[:-1], root)))
        return f"{located(source, node, loc)}{format_loc(loc)}: unknown key{hint}"
    message = _MESSAGES.get(kind) or str(err["msg"]).removeprefix("Value error, ")
    if kind in _MESSAGES and kind != "missing" and "input" in err:
        message += f", got {err['input']!r}"
    where_loc = loc[:-1] if kind == "missing" else loc
    return f"{located(source, node, where_loc)}{format_loc(loc)}: {message}"


def _fields_at(loc: Loc, root: type[BaseModel]) -> set[str]:
    """The keys allowed at ``loc``, by walking the schema's annotations."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return set()
        model = _model_in(field.annotation)
        if model is None:
            return set()
    return set(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin in (list, Union, types.UnionType, Annotated):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
