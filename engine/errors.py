"""Errors a user can act on. The CLI turns each into one message and exit code 2."""


class GacnError(Exception):
    """Base class: something the caller gave us is wrong or unavailable."""


class InputError(GacnError, ValueError):
    """Images that cannot be fused: unreadable, mismatched, too small, wrong dtype."""


class CheckpointError(GacnError):
    """A weights file that is missing, unreadable or not GACN."""


class BackendError(GacnError, RuntimeError):
    """A backend that cannot run here: missing library, no GPU, engine built elsewhere."""
