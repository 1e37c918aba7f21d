"""ComfyUI node classes: thin wrappers, every computation is in ``pfvg_core``; ``comfy_io`` is the one
module that talks to ComfyUI."""
import os
import sys

# pfvg_core sits beside nodes/. The pack root is appended (never prepended) to sys.path, so ComfyUI's
# own top-level modules (its ``nodes`` above all) always come first; nodes-internal imports are relative.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from .model_nodes import NODES as _MODEL  # noqa: E402
from .memory_nodes import NODES as _MEMORY  # noqa: E402
from .sampling_nodes import NODES as _SAMPLING  # noqa: E402
from .tool_nodes import NODES as _TOOLS  # noqa: E402
from .train_nodes import NODES as _TRAIN  # noqa: E402

from .comfy_io import install_demo_inputs, register_folders  # noqa: E402
from .common import check_numbers  # noqa: E402

register_folders()  # models/pfvg (+ extra_model_paths.yaml's pfvg folders) before the loaders list them
install_demo_inputs()  # the templates' start image in input/ (only where absent): a first run needs no upload
_ALL = {**_MODEL, **_MEMORY, **_SAMPLING, **_TOOLS, **_TRAIN}
for _cls, _ in _ALL.values():
    check_numbers(_cls)  # every INT/FLOAT input refused when not finite or outside its widget's range
NODE_CLASS_MAPPINGS = {key: cls for key, (cls, _) in _ALL.items()}
NODE_DISPLAY_NAME_MAPPINGS = {key: name for key, (_, name) in _ALL.items()}
