"""gacn-engine: multi-focus image fusion with GACN (Ma et al., Neurocomputing 2022)."""
from engine.errors import BackendError, CheckpointError, GacnError, InputError
from engine.fusion import Fuser, FusionResult, StackResult

__version__ = "0.1.0"
__all__ = ["Fuser", "FusionResult", "StackResult", "GacnError", "InputError", "CheckpointError", "BackendError"]
