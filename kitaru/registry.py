"""Finding the flow behind a stored execution, to replay, retry or resume it.

Every ``@flow`` registers itself by name when it is defined. A stored execution names its flow
and where it was defined (module and qualified name); the flow is taken from the registry, or
imported from that module.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

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
    if isinstance(module, str) and isinstance(qualname, str) and module != "__main__":
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            obj = None
        if isinstance(obj, Flow) and obj.name == manifest.flow_name:
            return obj
    where = f"{module}.{qualname}" if module and qualname else "its module"
    raise FlowNotFoundError(
        f"flow {manifest.flow_name!r} of execution {manifest.exec_id} is not defined in this process",
        exec_id=manifest.exec_id,
        name=manifest.flow_name,
        hint=f"import the module that defines it ({where}) first, or call the flow's own"
        " .replay()/.resume() method",
    )
