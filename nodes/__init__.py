"""ComfyUI node classes (thin: every computation is in ``pfvg_core``). Filled in by the node-pack work."""
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
