"""ComfyUI node classes: thin wrappers, every computation is in ``pfvg_core``."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # ComfyUI loads the pack as a package; pfvg_core sits beside nodes/
    sys.path.insert(0, _ROOT)

from .model_nodes import NODES as _MODEL  # noqa: E402
from .memory_nodes import NODES as _MEMORY  # noqa: E402
from .sampling_nodes import NODES as _SAMPLING  # noqa: E402
from .tool_nodes import NODES as _TOOLS  # noqa: E402
from .train_nodes import NODES as _TRAIN  # noqa: E402

_ALL = {**_MODEL, **_MEMORY, **_SAMPLING, **_TOOLS, **_TRAIN}
NODE_CLASS_MAPPINGS = {key: cls for key, (cls, _) in _ALL.items()}
NODE_DISPLAY_NAME_MAPPINGS = {key: name for key, (_, name) in _ALL.items()}
