"""Writes locales/en/nodeDefs.json (node, input and output names, descriptions and tooltips, as the
ComfyUI frontend reads them) and locales/en/main.json (the node category) from the node definitions,
so English labels always match the code; and the "Inputs" and "Outputs" sections of every help page
(web/docs/<node>.md) from the same declarations: every input with its type, range or choices, default and
tooltip. The prose around those two sections is written by hand and kept.
``python locales/make_locales.py``; tests check that all of it is up to date."""
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


DOCS = os.path.join(os.path.dirname(HERE), "web", "docs")
DYNAMIC = {"model_name", "semanticpack", "lora_name"}  # choices read from the user's folders: not listed


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int) and abs(v) >= 2**31:
        return f"2^{v.bit_length()} − 1" if v == 2 ** v.bit_length() - 1 else str(v)
    return str(v)


def input_line(name: str, entry: tuple, optional: bool) -> str:
    """One help-page line for an input: name, (optional), what it takes, its tooltip."""
    kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
    if isinstance(kind, list):
        what = "choice" if name in DYNAMIC else "one of " + ", ".join(f"`{c}`" for c in kind)
        what += f"; default `{opts.get('default', kind[0])}`" if name not in DYNAMIC else ""
    elif kind in ("INT", "FLOAT"):
        what = f"{kind} in [{_fmt(opts['min'])}, {_fmt(opts['max'])}], default {_fmt(opts['default'])}"
    elif kind in ("STRING", "BOOLEAN"):
        what = kind + (f", default `{opts['default']}`" if opts.get("default") not in (None, "") and "\n" not in str(opts.get("default")) else "")
    else:
        what = f"`{kind}`"
    return f"- **{name}**{' *(optional)*' if optional else ''} ({what}) — {opts.get('tooltip', '')}"


def doc_sections(key: str) -> str:
    """The generated "## Inputs" and "## Outputs" sections of node ``key``'s help page."""
    cls = nodes.NODE_CLASS_MAPPINGS[key]
    it = cls.INPUT_TYPES()
    lines = ["## Inputs"]
    for section in ("required", "optional"):
        for name, entry in it.get(section, {}).items():
            lines.append(input_line(name, entry, section == "optional"))
    lines += ["", "## Outputs"]
    tips = getattr(cls, "OUTPUT_TOOLTIPS", None) or ()
    for i, (name, kind) in enumerate(zip(cls.RETURN_NAMES, cls.RETURN_TYPES)):
        tip = f" — {tips[i]}" if i < len(tips) else ""
        lines.append(f"- **{name}** (`{kind}`){tip}")
    return "\n".join(lines) + "\n"


def render_doc(key: str, text: str) -> str:
    """``text`` (a help page) with its Inputs and Outputs sections generated; the prose before them and every
    paragraph or section after the Outputs list is kept as written."""
    head, sep, rest = text.partition("\n## Inputs\n")
    if not sep:
        raise ValueError(f"web/docs/{key}.md has no '## Inputs' section")
    after = rest.partition("\n## Outputs\n")[2]
    lines = after.split("\n")
    i = 0
    while i < len(lines) and (lines[i].startswith(("- ", "  ")) or not lines[i].strip()):
        i += 1
    trailer = "\n".join(lines[i:]).strip("\n")
    return head.rstrip("\n") + "\n\n" + doc_sections(key) + ("\n" + trailer + "\n" if trailer else "")


def render_docs() -> dict[str, str]:
    """{web/docs file name: its up-to-date text}."""
    out = {}
    for key in nodes.NODE_CLASS_MAPPINGS:
        with open(os.path.join(DOCS, f"{key}.md"), encoding="utf-8") as f:
            out[f"{key}.md"] = render_doc(key, f.read())
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
    for name, text in render_docs().items():
        with open(os.path.join(DOCS, name), "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote web/docs/{name}")
