"""A value from a Python function of your own: `function = "module:function"`,
called on the widget's interval with `args` as keyword arguments.

The module is imported when the config is loaded, so `run.py check` reports a
typo or a missing module. The config file's directory is put on sys.path first,
so a `jobs.py` next to config.toml imports as "jobs". An async function is
awaited on the event loop; a plain one runs in a worker thread, so a blocking
call cannot stall the server (though on a timeout the thread runs on to its
end: Python cannot stop a thread).

A module that exits while being imported (a script without `if __name__ ==
"__main__":` calling sys.exit, or argparse failing) or that hangs is a config
error too: the import runs in a thread of its own, waited for `import_timeout`.
A hung import is left running in that (daemon) thread: it cannot be stopped, but
it holds up neither `check` nor the server. A subprocess probe would also catch
os._exit, but the module must be imported in the server anyway, and its
import-time side effects would then run twice.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import SourceError

IMPORT_TIMEOUT = 10.0  # seconds a module may take to import, by default
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
        except SystemExit as exc:  # it would end the server, from whichever thread it came
            raise SourceError(f"the function called sys.exit({exc.code!r})") from None


def _import(options, module_name: str, config, limit: float) -> Any:
    base_dir = str(config.base_dir)
    if base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["module"] = importlib.import_module(module_name)
        except BaseException as exc:  # SystemExit too: in this thread it would vanish unseen
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"import {module_name}", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise options.error(
            "function", f'importing module "{module_name}" took longer than {limit:g}s (import_timeout)'
        )
    exc = outcome.get("error")
    if exc is None:
        return outcome["module"]
    if isinstance(exc, SystemExit):
        raise options.error(
            "function",
            f'module "{module_name}" called sys.exit({exc.code!r}) while being imported '
            '(a script\'s own code belongs under if __name__ == "__main__":)',
        )
    if isinstance(exc, ImportError):
        raise options.error("function", f'cannot import module "{module_name}": {exc}')
    # the module itself raised while being imported
    raise options.error("function", f'cannot import module "{module_name}": {type(exc).__name__}: {exc}')


def _resolve(options, reference: str, config, limit: float) -> Callable:
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        raise options.error("function", f'expected "module:function" like "jobs:queue_depth", got "{reference}"')
    module_name, attribute = match.groups()
    target = _import(options, module_name, config, limit)
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
    limit = options.duration("import_timeout", IMPORT_TIMEOUT, positive=True)
    function = _resolve(options, reference, config, limit)
    args_table = options.table("args", {})
    args = {name: args_table.raw(name) for name in args_table}
    _check_arguments(options, function, reference, args)
    return PythonFunction(function, args)
