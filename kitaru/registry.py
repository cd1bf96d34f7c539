"""Finding the flow behind a stored execution, to replay, retry or resume it.

Every ``@flow`` registers itself by name when it is defined. A stored execution names its flow
and where it was defined (``origin``: module and qualified name, and for a flow defined in a
script run as ``python script.py`` the script's absolute path). The flow is taken from the
registry, or imported from that module, or loaded from that script. Importing or loading runs
the code, so it happens only here, when the user asks to run that execution's flow again
(``KitaruClient().executions.replay/retry/resume``, ``kitaru-store retry/resume/replay``);
listing, showing and loading never import what a manifest names. A module name must be a plain
dotted path without a ``__main__`` part (importing ``venv.__main__`` runs a program); a script is
loaded from its path under a module name of its own, never as ``__main__``, so that its
``if __name__ == "__main__":`` block does not run.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
from typing import TYPE_CHECKING, Any, TypeGuard

from .errors import FlowNotFoundError

if TYPE_CHECKING:
    from types import ModuleType

    from kitaru_store.manifests import Manifest

    from .decorators import Flow

_flows: dict[str, Flow[Any, Any]] = {}
_scripts: dict[str, str] = {}  # module name this process gave a loaded script -> the script's path
_lock = threading.Lock()

MODULE = "kitaru.module"
QUALNAME = "kitaru.qualname"
SCRIPT = "kitaru.script"
MAX_SCRIPT_PATH = 4096  # PATH_MAX on Linux


def register(flow: Flow[Any, Any]) -> None:
    with _lock:
        _flows[flow.name] = flow


def origin(flow: Flow[Any, Any]) -> dict[str, str]:
    """Where ``flow`` is defined, as the execution metadata that ``find`` reads in another process.

    A flow of the ``__main__`` module is recorded by the module name it was run as
    (``python -m package.module``), else by its script's absolute path (``python script.py``);
    a flow of a script this process loaded (a retry of such a flow) keeps its script's path.
    """
    module: str = flow.fn.__module__
    qualname = getattr(flow.fn, "__qualname__", flow.name)
    script = _scripts.get(module)
    if script is None and module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and _importable(spec.name):
            return {MODULE: spec.name, QUALNAME: qualname}
        path = getattr(main, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            script = os.path.abspath(path)
    if script is None:
        return {MODULE: module, QUALNAME: qualname}
    return {MODULE: "__main__", QUALNAME: qualname, SCRIPT: script}


def find(manifest: Manifest) -> Flow[Any, Any]:
    from .decorators import Flow

    flow = _flows.get(manifest.flow_name)
    if flow is not None:
        return flow
    module = manifest.metadata.get(MODULE)
    qualname = manifest.metadata.get(QUALNAME)
    if not (isinstance(qualname, str) and _DOTTED.fullmatch(qualname)):
        qualname = None
    script = manifest.metadata.get(SCRIPT) if module == "__main__" else None
    if script is not None:
        obj = _from_script(manifest, script, qualname)
    elif _importable(module) and qualname is not None:
        obj = _attribute(_import(manifest, module), qualname)
    else:
        obj = None
    if isinstance(obj, Flow) and obj.name == manifest.flow_name:
        return obj
    if script is not None:
        raise _not_found(
            manifest,
            f"was defined in the script {script}, which no longer defines it (as {qualname or '(unknown)'})",
            f"put the flow back into {script} as it was, or {_YOURSELF}",
        )
    if module == "__main__":  # python -c, stdin, a notebook: nothing another process can load
        call = f"{qualname}.retry({manifest.exec_id!r})" if qualname else "the flow's .retry(exec_id)"
        raise _not_found(
            manifest,
            "was defined in __main__ without a script file (python -c, stdin, a notebook),"
            " which no other process can load",
            f"run {call} (or .resume()/.replay()) where the flow is defined,"
            " or move the flow into a module or script",
        )
    where = f"{module}.{qualname}" if _importable(module) and qualname else "its module"
    raise _not_found(
        manifest,
        "is not defined in this process",
        f"import the module that defines it ({where}) first, or call the flow's own"
        " .replay()/.resume() method",
    )


def _attribute(obj: Any, qualname: str | None) -> Any:
    if obj is None or qualname is None:
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def _import(manifest: Manifest, module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the module's own code failed: SystemExit included
        raise _failed(manifest, f"importing {module}", exc) from exc


def _from_script(manifest: Manifest, script: object, qualname: str | None) -> Any:
    """The flow ``qualname`` of the script at ``script``, loaded as a module of its own."""
    if not _script_path(script):
        raise _not_found(
            manifest, f"names a script path that is not an absolute path to a .py file: {script!r}", _YOURSELF
        )
    if not os.path.isfile(script):
        raise _not_found(
            manifest,
            f"was defined in the script {script}, which is gone",
            f"restore {script}, or {_YOURSELF}",
        )
    return _attribute(_load_script(manifest, script), qualname)


def _script_path(path: object) -> TypeGuard[str]:
    return (
        isinstance(path, str)
        and 0 < len(path) <= MAX_SCRIPT_PATH
        and os.path.isabs(path)
        and path.endswith(".py")
        and not any(ord(c) < 32 or ord(c) == 127 for c in path)
    )


def _load_script(manifest: Manifest, path: str) -> ModuleType:
    """Run the script at ``path`` as a module named for its path (once per process), as
    ``python script.py`` would but for its name: its directory first on sys.path, so that it
    imports its neighbours; not ``__main__``, so that its main block does not run."""
    import hashlib
    import importlib.util

    name = "kitaru_script_" + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    with _lock:
        loaded = sys.modules.get(name)
        if loaded is not None and _scripts.get(name) == path:
            return loaded
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise _failed(manifest, f"loading {path}", ImportError("not a Python source file"))
        module = importlib.util.module_from_spec(spec)
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        sys.modules[name] = module  # before it runs: dataclasses and pickle look themselves up
        _scripts[name] = path
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        _forget(name)
        raise
    except BaseException as exc:  # the script's own code failed: SystemExit included
        _forget(name)
        raise _failed(manifest, f"running the script {path}", exc) from exc
    return module


def _forget(name: str) -> None:
    with _lock:
        sys.modules.pop(name, None)
        _scripts.pop(name, None)


_YOURSELF = "import the script that defines the flow now and call that flow's .retry()/.replay()/.resume()"


def _not_found(manifest: Manifest, what: str, hint: str) -> FlowNotFoundError:
    return FlowNotFoundError(
        f"flow {manifest.flow_name!r} of execution {manifest.exec_id} {what}",
        exec_id=manifest.exec_id,
        name=manifest.flow_name,
        hint=hint,
    )


def _failed(manifest: Manifest, doing: str, exc: BaseException) -> FlowNotFoundError:
    return _not_found(
        manifest,
        f"could not be found: {doing} failed: {type(exc).__name__}: {exc}",
        "import the module that defines the flow yourself, or call the flow's own .replay()/.resume() method",
    )


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _importable(module: object) -> TypeGuard[str]:
    """A module path a manifest may make us import: dotted identifiers, no ``__main__`` part."""
    return (
        isinstance(module, str)
        and len(module) <= 255
        and _DOTTED.fullmatch(module) is not None
        and "__main__" not in module.split(".")
    )
