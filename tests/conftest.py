"""Shared fixtures: `mlp_backend` runs a model test on every backend that can run the MLP."""
import pytest

from fastmlp.model import missing_ops


def native_skip_reason():
    """Why the native backend cannot run an MLP here, or None if it can."""
    try:
        missing = missing_ops("native")
    except RuntimeError as exc:
        return str(exc)
    return f"native backend lacks {', '.join(missing)}" if missing else None


MLP_BACKENDS = [
    pytest.param("numpy"),
    pytest.param("native", marks=pytest.mark.skipif(native_skip_reason() is not None,
                                                    reason=str(native_skip_reason()))),
]


@pytest.fixture(params=MLP_BACKENDS)
def mlp_backend(request):
    return request.param
