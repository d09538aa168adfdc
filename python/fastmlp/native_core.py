"""Loads fastmlp._core, the compiled extension, with an error that says what to do."""


def load():
    """The fastmlp._core module; RuntimeError if it is not built or fails to import."""
    try:
        from . import _core
    except ModuleNotFoundError as exc:  # pragma: no cover - only without a compiled build
        raise RuntimeError(
            "fastmlp's native backend is not built (no fastmlp._core); reinstall with "
            "`pip install .` or use backend='numpy'") from exc
    except ImportError as exc:  # e.g. a bad FASTMLP_ISA value
        raise RuntimeError(f"fastmlp._core failed to import: {exc}") from exc
    return _core
