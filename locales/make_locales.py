"""Writes locales/en/nodeDefs.json (node, input and output names, descriptions and tooltips, as the
ComfyUI frontend reads them) and locales/en/main.json (the node category) from the node definitions,
so English labels always match the code. ``python locales/make_locales.py``; tests check it is up to date."""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import nodes  # noqa: E402
from nodes import common  # noqa: E402


def label(name: str) -> str:
    return name.replace("_", " ")


def node_defs() -> dict:
    out = {}
    for key, cls in nodes.NODE_CLASS_MAPPINGS.items():
        it = cls.INPUT_TYPES()
        inputs = {}
        for section in ("required", "optional"):
            for name, entry in it.get(section, {}).items():
                opts = entry[1] if len(entry) > 1 else {}
                inputs[name] = {"name": label(name), **({"tooltip": opts["tooltip"]} if "tooltip" in opts else {})}
        outputs = {str(i): {"name": label(n)} for i, n in enumerate(cls.RETURN_NAMES)}
        out[key] = {"display_name": nodes.NODE_DISPLAY_NAME_MAPPINGS[key], "description": cls.DESCRIPTION,
                    "inputs": inputs, "outputs": outputs}
    return out


def main_json() -> dict:
    return {"nodeCategories": {common.CATEGORY: common.CATEGORY}}


def render() -> dict[str, str]:
    return {name: json.dumps(data, indent=2, ensure_ascii=False) + "\n"
            for name, data in (("nodeDefs.json", node_defs()), ("main.json", main_json()))}


if __name__ == "__main__":
    for name, text in render().items():
        with open(os.path.join(HERE, "en", name), "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote locales/en/{name}")
