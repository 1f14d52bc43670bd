"""Errors a user can act on. The CLI turns each into one message and exit code 2."""


class GacnError(Exception):
    """Base class: something the caller gave us is wrong or unavailable.

    ``cli_message`` is the same message worded for the command line where the two differ
    (``--weights PATH`` there, ``weights=`` for a Python caller); it defaults to the message.
    """

    def __init__(self, *args, cli_message: str | None = None):
        super().__init__(*args)
        self._cli_message = cli_message

    @property
    def cli_message(self) -> str:
        return self._cli_message if self._cli_message is not None else str(self)


class InputError(GacnError, ValueError):
    """Images that cannot be fused: unreadable, mismatched, too small, wrong dtype."""


class CheckpointError(GacnError):
    """A weights file that is missing, unreadable or not GACN."""


class BackendError(GacnError, RuntimeError):
    """A backend that cannot run here: missing library, no GPU, engine built elsewhere."""


class WriteError(GacnError, OSError):
    """An output that cannot be written: a missing or read-only folder, a full disk (engine.atomic)."""
