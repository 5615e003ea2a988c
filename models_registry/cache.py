"""Per-process cache of loaded model versions, keyed by (version id, sha256).

Workers score every few seconds; reading the artifact and building an onnxruntime session each time would
dominate. The key includes the checksum so a re-uploaded artifact can never be served from a stale entry.
"""

from __future__ import annotations

import threading
import numpy as np
from cachetools import LRUCache, cached

from detection import runtime
from detection.runtime import LoadedModel
from models_registry.models import ModelVersion


@cached(LRUCache(maxsize=32), key=lambda version: (version.pk, version.sha256), lock=threading.Lock())
def loaded(version: ModelVersion) -> LoadedModel:
    """The cached LoadedModel of a version; raises runtime.ModelRuntimeError if the artifact is unusable."""
    try:
        data = version.read_onnx_bytes()
    except (OSError, ValueError) as exc:
        raise runtime.ModelRuntimeError(f"cannot read the artifact of {version}: {exc}") from exc
    if runtime.sha256(data) != version.sha256:
        raise runtime.ModelRuntimeError(f"the artifact of {version} no longer matches its sha256")
    return LoadedModel(
        version_id=version.pk,
        sha256=version.sha256,
        onnx_bytes=data,
        session=runtime.load_session(data),
        feature_names=list(version.feature_spec),
        output_spec=dict(version.output_spec or {}),
        background=np.asarray(version.background or [], dtype=np.float32).reshape(-1, version.n_features),
    )


def clear() -> None:
    loaded.cache_clear()
