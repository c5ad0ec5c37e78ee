"""The package's import graph stays layered: every module imports only modules of lower layers (or of its own
sub-package), nothing forms an import cycle, and the prompt vocabulary at the bottom loads without torch.

Read from the source with ast (function-level imports included), so a new import that breaks the layering fails
here before anyone notices a slow or circular import at run time.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "espnet_speechlm_plugin"
# bottom (0) to top; a module may import its own sub-package and anything in a lower layer
LAYERS = {
    "vocab": 0, "synth": 0, "langid": 0,  # the prompt vocabulary; speech synthesis for made-up corpora; language ID
    "features": 1,  # audio reading, fbank
    "data": 2,  # Kaldi files, validation, mixing, shards
    "model": 3, "scoring": 3, "corpora": 3,  # peers: scoring and the corpus readers never import the network
    "tasks": 4, "pseudolabel": 4,  # ESPnet task (model + data); pseudo-labelling (MT models + scoring)
    "decoding": 5,  # the inference core
    "zoo": 6,  # packing and the Python API
    "bin": 7,  # command-line entry points
    "": 8,  # the package's __init__ (lazy attribute access to the Python API)
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """The package modules ``path`` imports (``from pkg.sub import name`` counts as pkg.sub.name when a module)."""
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "espnet_speechlm_plugin")
            elif isinstance(child, ast.ImportFrom) and (child.module or "").split(".")[0] == "espnet_speechlm_plugin":
                for alias in child.names:
                    name = f"{child.module}.{alias.name}"
                    found.add(name if name in MODULES else child.module)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_subpackage_has_a_layer():
    missing = sorted({_layer(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"give these sub-packages a layer in LAYERS: {missing}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_lower_layers(module):
    mine = _layer(module)
    wrong = sorted(dep for dep in _imports(MODULES[module], module_level_only=False)
                   if _layer(dep) != mine and LAYERS[_layer(dep)] >= LAYERS[mine])
    assert not wrong, f"{module} (layer {mine!r}) imports {wrong}, which are not below it"


def test_no_import_cycle():
    graph = {m: sorted(_imports(p, module_level_only=True) & MODULES.keys()) for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for dep in graph[module]:
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_vocabulary_loads_without_torch():
    code = ("import sys, espnet_speechlm_plugin.vocab as v; "
            "heavy = [m for m in ('torch', 'transformers', 'espnet2', 'numpy', 'yaml') if m in sys.modules]; "
            "assert not heavy, heavy; print(*v.TASKS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.split() == ["transcribe", "translate", "answer"], out.stderr


def test_tasks_and_languages_are_listed_once():
    """The task and default-language lists exist only in vocab.py; everything else imports them."""
    from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES, TASKS

    lists = {tuple(TASKS), tuple(DEFAULT_LANGUAGES)}
    copies = []
    for module, path in MODULES.items():
        if module == "espnet_speechlm_plugin.vocab":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Constant) for e in node.elts):
                if tuple(e.value for e in node.elts) in lists:
                    copies.append(f"{path.relative_to(REPO)}:{node.lineno}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if tuple(node.value.split()) in lists and " " in node.value:
                    copies.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not copies, f"import TASKS / DEFAULT_LANGUAGES from espnet_speechlm_plugin.vocab instead: {copies}"


def test_no_sys_path_edits_outside_tests():
    """Code outside tests/ is reached as a package or as a script beside its own siblings, never by editing sys.path
    (which breaks outside a source checkout)."""
    edits = []
    code = [*PKG.rglob("*.py"), *REPO.glob("bench/*.py"), *REPO.glob("egs2/*/s2t1/local/*.py"), REPO / "setup.py"]
    for path in sorted(code):
        rel = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "path"
                    and isinstance(node.func.value.value, ast.Name) and node.func.value.value.id == "sys"):
                edits.append(f"{rel}:{node.lineno}")
    assert not edits, f"sys.path edited in {edits}"
