"""The architecture of ``zoo``, checked by walking the imports of every module (issue 28).

:data:`LAYERS` is the one table of the layers, lowest first: a module may import modules of its own layer
or of a lower one, never of a higher one. The tests below check, from the source (``ast``, nothing is
imported), that every module has a layer, that no import points up, that the imports made while importing
(module level, outside ``if TYPE_CHECKING:``) have no cycle, that no module imports another module's
private name, and that imports of zoo modules are at the top of the file. ``docs/architecture.md``
shows the layers and the path of a mel through ``zoo vocode``; its two generated blocks must equal what
:func:`render_layers` and :func:`render_mel_path` make of these tables and of the code
(``python tests/test_architecture.py --write`` rewrites them).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"

#: (layer, packages or modules in it, what it holds), lowest first.
LAYERS: list[tuple[str, tuple[str, ...], str]] = [
    # zoo.versions (the torch/torchaudio pair check zoo/__init__.py imports first) stays beside zoo/__init__.py
    ("core", ("zoo.core", "zoo.versions"), "the Vocoder contract: mel convention, configs, file helpers, streaming"),
    ("kernels", ("zoo.kernels",),
     "compiled CPU kernels and bindings, time-major convs, the conv-backend choice, folded inference"),
    ("nn", ("zoo.nn",), "the layers plugins compose: upsamplers, distributions, gated stack, flows"),
    ("audio", ("zoo.audio",), "around a vocoder: mel convention checks and adapters, metrics, denoiser"),
    ("registry", ("zoo.registry",), "hook specifications, model cards, the plugin registry"),
    ("hub", ("zoo.hub",), "weights: sources and cache, lock files, safe unpickling, weight-norm folding"),
    ("runtime", ("zoo.runtime",), "around a loaded model: TorchScript/ONNX export, speed and memory"),
    ("train", ("zoo.train",), "the training data pipeline and loop"),
    ("api", ("zoo", "zoo.api", "zoo.testing"), "the public functions (zoo.load ...) and the conformance kit"),
    ("cli", ("zoo.cli",), "the zoo command, one module per command group"),
]

#: Function-level imports of zoo modules that must stay inside their function: (module, imported) -> why.
LAZY_OK: dict[tuple[str, str], str] = {}

#: Packages a zoo module may import inside a function, and why; every other import is at the top of the file.
LAZY_PACKAGES: dict[str, str] = {
    "matplotlib": "optional (not a dependency): only `zoo bench --plot` draws",
    "onnxruntime": "optional (not a dependency): only ONNX export runs and verifies with it",
    "onnx": "optional (not a dependency): only ONNX export needs it",
    "resource": "Unix only: peak memory where /proc is missing",
    "zoo_model_cards": "the shipped cards' data package: the registry works without it",
    # the optional extras [quality] and [tensorboard]: a missing one is reported by name when it is used
    "pystoi": "optional extra [quality]",
    "pesq": "optional extra [quality]",
    "speechmos": "optional extra [quality]",
    "librosa": "optional extra [quality]",
    "requests": "optional extra [quality]",
    "tensorboard": "optional extra [tensorboard]",
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the zoo module imported (a module, not a name in it)
    names: tuple[str, ...]  # names taken from it (empty for `import x`)
    line: int
    top: bool  # runs when the module is imported (module level, not under TYPE_CHECKING)
    typing_only: bool  # under `if TYPE_CHECKING:`


def modules() -> dict[str, Path]:
    """Every module of the zoo package: dotted name -> file."""
    out = {}
    for path in sorted((REPO / "zoo").rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> int | None:
    best, best_len = None, -1
    for rank, (_, members, _) in enumerate(LAYERS):
        for m in members:
            hit = module == m if m == "zoo" else module == m or module.startswith(m + ".")
            if hit and len(m) > best_len:
                best, best_len = rank, len(m)
    return best


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import of a zoo module in one file, resolved to the module it loads."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, top: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False, typing_only)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False, True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), top, typing_only)
            elif isinstance(child, ast.Import):
                for a in child.names:
                    if a.name == "zoo" or a.name.startswith("zoo."):
                        found.append(Import(module, a.name, (), child.lineno, top, typing_only))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                if not (base == "zoo" or base.startswith("zoo.")):
                    continue
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    target, names = (sub, ()) if sub in known else (base, (a.name,))
                    found.append(Import(module, target, names, child.lineno, top, typing_only))
            else:
                visit(child, top, typing_only)

    visit(tree, True, False)
    return found


def all_imports() -> list[Import]:
    known = modules()
    return [imp for mod, path in known.items() for imp in imports_of(mod, path, known)]


def _where(imp: Import) -> str:
    return f"{modules()[imp.source].relative_to(REPO)}:{imp.line}"


# ---------------------------------------------------------------------------------------------- tests
def test_every_module_has_a_layer():
    missing = [m for m in modules() if layer_of(m) is None]
    assert not missing, f"modules with no layer: {missing}; give each a place in LAYERS (tests/test_architecture.py)"


def test_imports_point_down_the_layers():
    up = []
    for imp in all_imports():
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src is not None and dst is not None and dst > src:
            up.append(f"{_where(imp)}: {imp.source} ({LAYERS[src][0]}) imports {imp.target} ({LAYERS[dst][0]})")
    assert not up, "imports against the layer order:\n" + "\n".join(up)


def test_zoo_imports_no_plugin():
    bad = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names if n.startswith("zoo_plugins")]
    assert not bad, "the core imports no plugin by name:\n" + "\n".join(bad)


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


#: The built-in architectures' names (from plugins/, not from the registry, so a plugin that fails still counts).
BUILT_IN = sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "__init__.py").exists())

#: Places in zoo/ where a built-in architecture's name may appear as a string, and why: none is a model choice.
NAMES_OK: dict[tuple[str, str], str] = {
    ("zoo/core/mel.py", "hifigan"): "mel conventions are named after the reference code that defines them",
    ("zoo/core/mel.py", "flowavenet"): "mel conventions are named after the reference code that defines them",
    ("zoo/audio/metrics.py", "hifigan"): "the log-mel L1 metric uses the hifigan mel convention (QUALITY.md)",
    ("zoo/cli/app.py", "hifigan"): "zoo vocode's default --model, the product's default (README)",
    ("zoo/cli/compare.py", "hifigan"): "zoo compare's default model, as zoo vocode",
}


def test_zoo_knows_no_vocoder_by_name():
    """The core knows no vocoder by name: no string in zoo/ (docstrings and comments aside) is a built-in
    architecture's name or a model name of one (``waveglow.nvidia``), except the conventions of NAMES_OK.
    Behaviour that differs per architecture is stated by the architecture (``Vocoder`` class attributes and
    methods: ``compiled_kernels``, ``noise_shape``, ``denoiser_sampling`` ...)."""
    assert {"hifigan", "waveglow", "wavenet"} <= set(BUILT_IN)
    found: list[str] = []
    for path in sorted((REPO / "zoo").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docs = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in docs:
                continue
            for name in BUILT_IN:
                if (node.value == name or node.value.startswith(name + ".")) and (rel, name) not in NAMES_OK:
                    found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, "zoo/ names built-in vocoders:\n" + "\n".join(found)


def test_no_import_cycle():
    """No cycle among the imports a module makes when it is imported, nor among all its zoo imports
    (function-level ones included) outside ``TYPE_CHECKING`` blocks."""
    at_import: dict[str, set[str]] = {}
    anywhere: dict[str, set[str]] = {}
    for imp in all_imports():
        if imp.target == imp.source or imp.typing_only:
            continue
        anywhere.setdefault(imp.source, set()).add(imp.target)
        if imp.top:
            at_import.setdefault(imp.source, set()).add(imp.target)
    cycle = _cycle(at_import)
    assert cycle is None, "import cycle at import time: " + " -> ".join(cycle)
    cycle = _cycle(anywhere)
    assert cycle is None, "import cycle through function-level imports: " + " -> ".join(cycle)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_crosses_modules():
    """No ``from zoo.x import _name`` (nor ``zoo.x._y`` modules, nor ``module._name`` through an imported
    zoo module) outside the module that defines it, in zoo/ and in the built-in plugins."""
    bad = []
    known = modules()
    files = list(known.items()) + [(None, p) for p in sorted((REPO / "plugins").rglob("*.py"))]
    for mod, path in files:
        tree = ast.parse(path.read_text())
        aliases: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zoo") and not node.level \
                    and not (node.module or "").startswith("zoo_plugins"):
                for a in node.names:
                    target = f"{node.module}.{a.name}"
                    if target in known:
                        aliases.add(a.asname or a.name)
                    if _private(a.name) or any(_private(p) for p in (node.module or "").split(".")):
                        bad.append(f"{path.relative_to(REPO)}:{node.lineno}: from {node.module} import {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("zoo.") and any(_private(p) for p in a.name.split(".")):
                        bad.append(f"{path.relative_to(REPO)}:{node.lineno}: import {a.name}")
                    if a.asname and a.name in known:
                        aliases.add(a.asname)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                base = ast.unparse(node.value)
                if base in aliases or (base.startswith("zoo.") and base in known and base != mod):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {base}.{node.attr}")
    assert not bad, "private names used outside their module (make them public or move them):\n" + "\n".join(bad)


def test_zoo_imports_are_at_the_top():
    """Imports of zoo modules sit at the top of the file, so the import lines show the layers; a function
    keeps one only with a reason in LAZY_OK."""
    lazy = [f"{_where(imp)}: {imp.source} imports {imp.target} inside a function"
            for imp in all_imports()
            if not imp.top and not imp.typing_only and imp.target != imp.source
            and (imp.source, imp.target) not in LAZY_OK]
    assert not lazy, ("hoist these to the top of the file (python restructure.py --hoist), or list them in "
                      "LAZY_OK with the reason:\n" + "\n".join(lazy))


def test_other_imports_are_at_the_top():
    """A function imports another package only when LAZY_PACKAGES says why (optional or platform-specific);
    the rest sit at the top of the file."""
    lazy = []
    for path in modules().values():
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    roots = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    roots = {(node.module or "").split(".")[0]}
                else:
                    continue
                roots -= {"zoo", *LAZY_PACKAGES}
                if roots:
                    lazy.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not lazy, ("imports inside functions: move them to the top (python restructure.py --hoist), or name "
                      "the package in LAZY_PACKAGES with the reason:\n" + "\n".join(sorted(set(lazy))))


# ---------------------------------------------------------------------------------------------- the doc
#: The path of a mel through `zoo vocode mel.npy -o out.wav --model hifigan`: (function, layer, what it does,
#: the calls its source must contain, in the order they are made).
MEL_PATH: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("zoo.cli.app:_cmd_vocode", "cli", "checks every input and output before writing anything",
     ("zoo.load(", "read_mel(", ".checked_mel(", ".vocode(", "write_wav_atomic(")),
    ("zoo.api:load", "api", "a model name, Hub repo or folder -> a ready model in eval mode",
     ("get_registry()", "resolve_card(", "_build(", "prepare_for_inference()")),
    ("zoo.registry.plugins:Registry.card", "registry", "the model card: sources pinned by sha256, config, mel",
     ()),
    ("zoo.hub.sources:resolve_card", "hub", "each source in turn: fetched, sha256-checked, converted once",
     ("fetch_source(", "convert_cached(")),
    ("zoo.api:_build", "api", "the plugin's class from the registry, its config, its weights",
     ("get_registry().architecture(", "load_weights(")),
    ("zoo.cli.common:read_mel", "cli", "the saved mel as a tensor (.npy without pickles, .pt weights-only)", ()),
    ("zoo.core.vocoder:Vocoder.checked_mel", "core", "shape [B, n_mels, frames], channel count, finite", ()),
    ("zoo.core.vocoder:Vocoder.vocode", "core", "device and dtype, a synthesize call per length group or padded batch",
     ("self.checked_mel(", "_synthesize_checked(")),
    ("zoo_plugins.hifigan.model:HiFiGAN.synthesize", "plugin", "the architecture, windowed over long inputs",
     ("in_windows(",)),
    ("zoo.core.stream:in_windows", "core", "bounded memory: windows with their context, only own samples kept",
     ()),
    ("zoo.core.files:write_wav_atomic", "core", "16-bit wav through a temporary file, renamed when complete", ()),
]


def resolve(qualname: str) -> object:
    module, _, attr = qualname.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def layer_edges() -> dict[str, set[str]]:
    """layer -> the lower layers its modules import (any import, TYPE_CHECKING ones aside)."""
    out: dict[str, set[str]] = {name: set() for name, _, _ in LAYERS}
    for imp in all_imports():
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src is not None and dst is not None and src != dst and not imp.typing_only:
            out[LAYERS[src][0]].add(LAYERS[dst][0])
    return out


def render_layers() -> str:
    """The layer picture: top layer first, each with its modules and the layers it imports."""
    edges = layer_edges()
    order = [name for name, _, _ in LAYERS]
    known = modules()
    lines = ["```text"]
    for rank in range(len(LAYERS) - 1, -1, -1):
        name, members, what = LAYERS[rank]
        mods = sorted(m for m in known if layer_of(m) == rank and m not in members)
        leaves = ", ".join(m.rsplit(".", 1)[1] for m in mods)
        heads = " ".join(m for m in members if m in known)
        lines.append(f"{name:<9}│ {heads}" + (f": {leaves}" if leaves else ""))
        lines.append(f"{'':<9}│   {what}")
        below = sorted(edges[name], key=order.index, reverse=True)
        lines.append(f"{'':<9}│   imports: {', '.join(below) if below else 'no other layer'}")
        if rank:
            lines.append(f"{'':<9}▼")
    lines.append("```")
    return "\n".join(lines)


def render_mel_path() -> str:
    rows = ["| step | function | layer | what happens |", "| --- | --- | --- | --- |"]
    for i, (qualname, layer, what, _) in enumerate(MEL_PATH, 1):
        rows.append(f"| {i} | `{qualname}` | {layer} | {what} |")
    return "\n".join(rows)


BLOCKS = {"layers": render_layers, "mel-path": render_mel_path}


def _block(text: str, name: str) -> re.Match | None:
    return re.search(rf"(<!-- generated:{name} -->\n)(.*?)\n?(<!-- /generated:{name} -->)", text, re.S)


def test_layer_picture_matches_the_code():
    text = DOC.read_text()
    for name, render in BLOCKS.items():
        m = _block(text, name)
        assert m, f"{DOC.name} lacks the <!-- generated:{name} --> block"
        assert m.group(2) == render(), (f"the {name} block of {DOC.name} is out of date: "
                                        "run python tests/test_architecture.py --write")


def test_mel_path_follows_the_code():
    """Each step of the documented path exists, lives in the layer it is shown in, and makes the calls
    listed for it, in that order."""
    for qualname, layer, _, calls in MEL_PATH:
        obj = resolve(qualname)
        module = qualname.partition(":")[0]
        if layer != "plugin":
            assert LAYERS[layer_of(module)][0] == layer, f"{qualname} is not in the {layer} layer"
        source = inspect.getsource(obj)
        pos = 0
        for call in calls:
            found = source.find(call, pos)
            assert found >= 0, f"{qualname} no longer calls {call!r} (after position {pos}): update MEL_PATH"
            pos = found + len(call)


def write_doc() -> None:
    text = DOC.read_text()
    for name, render in BLOCKS.items():
        m = _block(text, name)
        if m is None:
            raise SystemExit(f"{DOC} lacks the <!-- generated:{name} --> block")
        text = text[: m.start(2)] + render() + "\n" + text[m.start(3):]
    DOC.write_text(text)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_doc()
    else:
        print(render_layers())
        print()
        print(render_mel_path())
