"""A value from a Python function of your own: `function = "module:function"`,
called on the widget's interval with `args` as keyword arguments.

The module is imported when the config is loaded, so `run.py check` reports a
typo or a missing module. The config file's directory is put on sys.path first,
so a `jobs.py` next to config.toml imports as "jobs". An async function is
awaited on the event loop; a plain one runs in a worker thread, so a blocking
call cannot stall the server (though on a timeout the thread runs on to its
end: Python cannot stop a thread).
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any

from . import SourceError

_REFERENCE = re.compile(r"([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")


def _is_async(function: Callable) -> bool:
    # An object whose __call__ is an async method counts too.
    call = getattr(function, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


class PythonFunction:
    def __init__(self, function: Callable, args: dict[str, Any]):
        self.function = function
        self.args = args

    async def fetch(self) -> Any:
        args = copy.deepcopy(self.args)  # a function that edits its arguments must not edit the config
        try:
            if _is_async(self.function):
                return await self.function(**args)
            result = await asyncio.to_thread(self.function, **args)
            return await result if inspect.isawaitable(result) else result
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"{type(exc).__name__}: {exc}") from exc


def _import(options, module_name: str, config) -> Any:
    base_dir = str(config.base_dir)
    if base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise options.error("function", f'cannot import module "{module_name}": {exc}') from None
    except Exception as exc:  # the module itself raised while being imported
        raise options.error("function", f'cannot import module "{module_name}": {type(exc).__name__}: {exc}') from None


def _resolve(options, reference: str, config) -> Callable:
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        raise options.error("function", f'expected "module:function" like "jobs:queue_depth", got "{reference}"')
    module_name, attribute = match.groups()
    target = _import(options, module_name, config)
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise options.error("function", f'module "{module_name}" has no attribute "{attribute}"') from None
    if not callable(target):
        raise options.error("function", f'"{reference}" is not callable')
    return target


def _check_arguments(options, function: Callable, reference: str, args: dict[str, Any]) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some built-ins have none: find out when called
        return
    try:
        signature.bind(**args)
    except TypeError as exc:
        raise options.error("args", f'"{reference}" does not take these arguments: {exc}') from None


def build(options, widget, config) -> PythonFunction:
    reference = options.str("function")
    function = _resolve(options, reference, config)
    args_table = options.table("args", {})
    args = {name: args_table.raw(name) for name in args_table}
    _check_arguments(options, function, reference, args)
    return PythonFunction(function, args)
