"""PFVG — ComfyUI entry point (ComfyUI imports this folder as a custom node pack).

Nodes live in ``nodes/`` (thin classes); every computation lives in ``pfvg_core``.
"""
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # imported as a plain file (e.g. pytest visiting the repository root): nothing to register
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
