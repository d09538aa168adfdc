"""Shared fixtures: `mlp_backend` runs a model test on every backend that can run the MLP."""
import pytest

import fastmlp
from fastmlp.model import MODEL_OPS


def native_skip_reason():
    """Why the native backend cannot run an MLP here, or None if it can."""
    try:
        table = fastmlp.get_backend("native")
    except RuntimeError as exc:
        return str(exc)
    missing = [op for op in MODEL_OPS if op not in table.kernels]
    return f"native backend lacks {', '.join(missing)}" if missing else None


MLP_BACKENDS = [
    pytest.param("numpy"),
    pytest.param("native", marks=pytest.mark.skipif(native_skip_reason() is not None,
                                                    reason=str(native_skip_reason()))),
]


@pytest.fixture(params=MLP_BACKENDS)
def mlp_backend(request):
    return request.param
