"""The seam: pfvg_core never imports ComfyUI and has no import circle; nodes/comfy_io.py is the only
module of the pack that imports ComfyUI."""
import ast
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMFY = ("comfy", "comfy_extras", "comfy_api", "folder_paths", "server", "nodes", "latent_preview", "execution")

REFUSE_AND_IMPORT_ALL = r"""
import importlib, importlib.abc, pkgutil, sys
COMFY = set(sys.argv[1].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in COMFY:
            raise ImportError(f"pfvg_core imported {name}")
        return None
sys.meta_path.insert(0, Refuse())
import pfvg_core
names = ["pfvg_core"] + [m.name for m in pkgutil.walk_packages(pfvg_core.__path__, "pfvg_core.")]
for name in names:
    if name != "pfvg_core.__main__":  # runs the command line
        importlib.import_module(name)
import json
print(json.dumps({"imported": names, "comfy": sorted(n for n in sys.modules if n.split(".")[0] in COMFY)}))
"""


def test_every_pfvg_core_module_imports_with_comfyui_refused():
    out = subprocess.run([sys.executable, "-c", REFUSE_AND_IMPORT_ALL, ",".join(COMFY)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["comfy"] == []
    assert {"pfvg_core.loop", "pfvg_core.operations", "pfvg_core.cli"} <= set(got["imported"])


def test_the_refusing_hook_does_refuse():
    code = REFUSE_AND_IMPORT_ALL.replace("import pfvg_core\n", "import pfvg_core\nimport folder_paths\n", 1)
    out = subprocess.run([sys.executable, "-c", code, ",".join(COMFY)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode != 0 and "pfvg_core imported folder_paths" in out.stderr


def _imports(path: pathlib.Path, module: str) -> set[str]:
    """Absolute names a module imports (relative imports resolved; ``from x import y`` gives x and x.y)."""
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return names


def _modules(folder: str) -> dict[str, pathlib.Path]:
    mods = {}
    for f in (ROOT / folder).rglob("*.py"):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = f
    return mods


def test_pfvg_core_has_no_import_of_comfyui_and_no_import_circle():
    mods = _modules("pfvg_core")
    edges = {}
    for m, f in mods.items():
        names = _imports(f, m)
        assert not [n for n in names if n.split(".")[0] in COMFY], f"{f} imports ComfyUI"
        edges[m] = {n for n in names if n in mods and n not in (m, "pfvg_core")}
    # a module is on a circle iff it reaches itself
    for start in edges:
        seen, todo = set(), list(edges[start])
        while todo:
            n = todo.pop()
            assert n != start, f"import circle through {start}"
            if n not in seen:
                seen.add(n)
                todo += edges[n]
    # the command line sits apart: only ``python -m pfvg_core`` imports it
    assert [m for m, e in edges.items() if "pfvg_core.cli" in e] == ["pfvg_core.__main__"]
    # the engine never reaches the research runners or the benchmarks (they live outside the package)
    assert not [m for m, f in mods.items() if any(n.split(".")[0] in ("research", "bench") for n in _imports(f, m))]


def test_research_and_bench_import_the_engine_as_users_do():
    """research/ and bench/ are outside the installed package: they reach the engine by absolute imports only."""
    for folder in ("research", "bench"):
        for m, f in _modules(folder).items():
            rel = [n.module for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.ImportFrom) and n.level]
            assert not rel, f"{f} imports relatively: {rel}"
            assert not [n for n in _imports(f, m) if n.split(".")[0] in COMFY], f"{f} imports ComfyUI"


def test_circle_detection_finds_a_circle(tmp_path):
    """The check above can fail: a two-module circle is found."""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("from .a import x\n")
    assert "pkg.b" in _imports(tmp_path / "a.py", "pkg.a") and "pkg.a" in _imports(tmp_path / "b.py", "pkg.b")


def test_only_comfy_io_imports_comfyui_and_nodes_import_each_other_relatively():
    for f in (ROOT / "nodes").glob("*.py"):
        tree = ast.parse(f.read_text())
        absolute = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        absolute |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        comfy = {n for n in absolute if n.split(".")[0] in COMFY}
        if f.name == "comfy_io.py":
            assert comfy == {"folder_paths", "comfy.model_management", "comfy.model_patcher", "comfy.utils", "comfy.latent_formats",
                             "latent_preview",
                             "server"}, comfy
        else:  # an absolute ``nodes`` here would be ComfyUI's module, not ours
            assert comfy == set(), f"{f} imports {comfy}: ComfyUI goes through nodes/comfy_io.py, our modules relatively"


def test_pack_root_is_never_put_before_comfyui_on_sys_path():
    """ComfyUI's own top-level ``nodes`` must keep winning: the pack root is appended, not prepended."""
    code = ("import sys, importlib.util, pathlib; root = sys.argv[1]; sys.path[:] = [p for p in sys.path if p not in ('', root)]; "
            "spec = importlib.util.spec_from_file_location('pfvg_pack', root + '/__init__.py', submodule_search_locations=[root]); "
            "m = importlib.util.module_from_spec(spec); sys.modules['pfvg_pack'] = m; spec.loader.exec_module(m); "
            "print(sys.path.index(root) == len(sys.path) - 1, 'nodes' in sys.modules, len(m.NODE_CLASS_MAPPINGS))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd="/", capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr[-2000:]
    appended, top_level_nodes, count = out.stdout.split()
    assert appended == "True" and top_level_nodes == "False" and int(count) >= 8
