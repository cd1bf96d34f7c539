"""Finding the flow behind a stored execution, to replay, retry or resume it.

Every ``@flow`` registers itself by name when it is defined. A stored execution names its flow
and where it was defined (module and qualified name); the flow is taken from the registry, or
imported from that module. Importing runs the module's code, so it happens only here, when the
user asks to run that execution's flow again (``KitaruClient().executions.replay/retry/resume``);
listing, showing and loading never import what a manifest names. The name must be a plain dotted
module path, and never a ``__main__`` module (importing one runs a program).
"""

from __future__ import annotations

import importlib
import re
import threading
from typing import TYPE_CHECKING, Any, TypeGuard

from .errors import FlowNotFoundError

if TYPE_CHECKING:
    from kitaru_store.manifests import Manifest

    from .decorators import Flow

_flows: dict[str, Flow[Any, Any]] = {}
_lock = threading.Lock()


def register(flow: Flow[Any, Any]) -> None:
    with _lock:
        _flows[flow.name] = flow


def find(manifest: Manifest) -> Flow[Any, Any]:
    from .decorators import Flow

    flow = _flows.get(manifest.flow_name)
    if flow is not None:
        return flow
    module = manifest.metadata.get("kitaru.module")
    qualname = manifest.metadata.get("kitaru.qualname")
    if _importable(module) and isinstance(qualname, str) and _DOTTED.fullmatch(qualname):
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            obj = None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the module's own code failed: SystemExit included
            raise FlowNotFoundError(
                f"flow {manifest.flow_name!r} of execution {manifest.exec_id}: importing {module}"
                f" failed: {type(exc).__name__}: {exc}",
                exec_id=manifest.exec_id,
                name=manifest.flow_name,
                hint="import the module that defines the flow yourself, or call the flow's own"
                " .replay()/.resume() method",
            ) from exc
        if isinstance(obj, Flow) and obj.name == manifest.flow_name:
            return obj
    where = f"{module}.{qualname}" if _importable(module) and isinstance(qualname, str) else "its module"
    raise FlowNotFoundError(
        f"flow {manifest.flow_name!r} of execution {manifest.exec_id} is not defined in this process",
        exec_id=manifest.exec_id,
        name=manifest.flow_name,
        hint=f"import the module that defines it ({where}) first, or call the flow's own"
        " .replay()/.resume() method",
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
