"""${NAME} in any string of the config: the environment's value, with a default
(${NAME:-default}) or a literal "${" ($${)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .reader import error, join

# "$${" must be tried first so it escapes; a lone "${" that does not form a
# valid reference matches without a name and is reported rather than kept.
_REF = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?")


def interpolate_str(text: str, env: Mapping[str, str], file: str, path: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match[0] == "$${":
            return "${"
        name, default = match["name"], match["default"]
        if name is None:
            raise error(file, path, 'invalid "${": write ${NAME}, ${NAME:-default}, or $${ for a literal "${"')
        if default is not None and "${" in default:  # it would stay as text, one "}" short
            raise error(
                file, path, f'the default of ${{{name}:-...}} holds "${{": a default is text, not another reference'
            )
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            raise error(file, path, f"environment variable {name} is not set")
        return value

    return _REF.sub(replace, text)


def interpolate(value: Any, env: Mapping[str, str], file: str, path: str = "") -> Any:
    """Return value with every string, at any depth, interpolated (keys untouched)."""
    if isinstance(value, str):
        return interpolate_str(value, env, file, path)
    if isinstance(value, dict):
        return {k: interpolate(v, env, file, join(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, file, join(path, i)) for i, v in enumerate(value)]
    return value
