"""gacn-engine: multi-focus image fusion with GACN (Ma et al., Neurocomputing 2022)."""
from engine.errors import BackendError, CheckpointError, GacnError, InputError, WriteError
from engine.fusion import Fuser
from engine.results import FusionResult, StackResult, StreamResult

__version__ = "0.1.0"
__all__ = ["Fuser", "FusionResult", "StackResult", "StreamResult", "GacnError", "InputError", "CheckpointError", "BackendError", "WriteError"]
