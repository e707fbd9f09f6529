"""Imports follow the data flow of docs/architecture.md: a part of xaikit imports only parts upstream of it.

    io -> data -> models/train -> saliency -> regions -> stats -> evaluation

with the small leaf modules (errors, _util and the shared numerics) importable from anywhere, and viz, widgets,
report, demo and the front doors (CLI, service, cluster) beside the flow: they may import any part, no part of
the flow imports them. Function-local (lazy) imports count: they are dependencies too. Every exception is listed
in ALLOWED with its reason; an exception that no longer occurs fails the test too, so the list stays honest.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xaikit"

#: Imported by anyone: no xaikit imports of their own beyond each other.
LEAVES = {"errors", "_util", "_resampling", "_multiplicity", "_modes", "_registry", "__init__", "__version__"}
#: The flow, upstream first; a part may import parts of earlier steps only.
FLOW = [
    ["io"],
    ["data", "phantom"],                      # datasets; phantom draws the synthetic sample images
    ["domain", "models"],                     # domain: the model's training-domain guard (errors only)
    ["checkpoint"],                           # a model + its Preprocess (data) + architecture (models)
    ["train"],
    ["worlds"],                               # ground-truth worlds: phantom sets + tiny models (phantom, train)
    ["samples"],                              # builds the shipped sample data and models (phantom, train)
    ["saliency"],
    ["regions"],
    ["stats"],
    ["evaluation"],
    ["shortcut"],                             # the shortcut lab: models, maps, regions and stats together
]
#: Beside the flow: may import any part; no part of the flow imports them (except the ALLOWED below).
BESIDE = {"viz", "widgets", "report", "demo", "cli", "service", "inference", "cluster", "__main__"}
#: (importing module, imported part) -> why this upstream-to-downstream import is allowed.
ALLOWED = {
    ("xaikit.train.fit", "viz"): "FitResult.plot(): scikit-learn's Display pattern (compute once, .plot() "
                                 "returns a figure); imported inside the method, viz computes nothing",
    ("xaikit.train.assessment", "viz"): "Assessment.plot_*(): the same Display pattern, imported inside the methods",
    ("xaikit.shortcut", "viz"): "ShortcutLab.plot_*(): the same Display pattern, imported inside the methods",
}

RANK = {part: i for i, step in enumerate(FLOW) for part in step}


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """(importing module, imported xaikit module, line) for every import in ``path``, lazy ones included."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(rel.parts)
    package = module[: -len(".__init__")] if module.endswith(".__init__") else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            stem = ".".join(base + ([node.module] if node.module else []))
            found += [(module, stem if node.module else f"{stem}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xaikit"):
            found.append((module, node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(module, a.name, node.lineno) for a in node.names if a.name.startswith("xaikit")]
    return found


def _edges() -> list[tuple[str, str, str, int]]:
    """(importing module, its part, imported part, line) across parts."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, target, line in _imports(path):
            src, dst = _part(module), _part(target)
            if src != dst:
                out.append((module, src, dst, line))
    return out


def _allowed(src: str, dst: str) -> bool:
    if dst in LEAVES or src in BESIDE:
        return True
    if src in LEAVES:
        return dst in LEAVES
    return dst in RANK and src in RANK and RANK[dst] < RANK[src]


def test_every_part_is_placed():
    parts = {_part(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")}
    unplaced = parts - LEAVES - BESIDE - set(RANK)
    assert not unplaced, f"place {sorted(unplaced)} in FLOW, BESIDE or LEAVES (see docs/architecture.md)"


def test_imports_follow_the_data_flow():
    wrong = [f"{module} (line {line}): {src} imports {dst}" for module, src, dst, line in _edges()
             if not _allowed(src, dst) and (module, dst) not in ALLOWED]
    assert not wrong, "imports against the flow (move the code upstream, or list it in ALLOWED with a reason):\n" \
                      + "\n".join(wrong)


@pytest.mark.parametrize("exception", sorted(ALLOWED))
def test_listed_exceptions_still_exist_and_are_lazy(exception):
    module, dst = exception
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    top_level = {n.lineno for n in tree.body}
    lines = [line for m, t, line in _imports(path) if _part(t) == dst]
    assert lines, f"{module} no longer imports {dst}: drop the exception from ALLOWED"
    assert not top_level & set(lines), f"{module} imports {dst} at module level; keep it inside the method"


def test_the_flow_is_the_designs():
    """The order here is docs/architecture.md's:
    io -> data -> models/train -> saliency -> regions -> stats -> evaluation."""
    order = ["io", "data", "models", "train", "saliency", "regions", "stats", "evaluation"]
    ranks = [RANK[p] for p in order]
    assert ranks == sorted(set(ranks)), "FLOW must keep docs/architecture.md's order, each step strictly after the last"
    assert not BESIDE & set(RANK) and not LEAVES & set(RANK)


def _module_graph() -> dict[str, set[str]]:
    """Module -> the xaikit modules it imports (lazy imports included); ``xaikit.pkg.name`` that is no module of
    its own (an attribute imported from a package) counts as the package."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
               for p in PACKAGE.rglob("*.py")}

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in PACKAGE.rglob("*.py"):
        for module, target, _ in _imports(path):
            src, dst = module.removesuffix(".__init__"), resolve(target)
            if dst and dst != src and not src.startswith(dst + "."):  # a module reading its own package's __init__
                graph[src].add(dst)
    return graph


def test_no_import_circles():
    """No two modules import each other, directly or around a loop (lazy imports count: a lazy import that closes
    a loop hides the circle, it does not remove it)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    graph = _module_graph()
    names = sorted(graph)
    index = {n: i for i, n in enumerate(names)}
    rows = [index[s] for s in names for _ in graph[s]]
    cols = [index[d] for s in names for d in sorted(graph[s])]
    n, labels = connected_components(csr_matrix(([1] * len(rows), (rows, cols)), shape=(len(names),) * 2),
                                     connection="strong")
    circles = [sorted(n_ for n_, lab in zip(names, labels) if lab == c) for c in range(n)]
    circles = [c for c in circles if len(c) > 1]
    assert not circles, f"import circles (break them: move the shared part into a module both import): {circles}"


#: Modules that load the kit function by function, on purpose: the front doors and the demo (``xaikit --help`` and
#: ``import xaikit`` start without importing the torch-heavy parts; each command pays only for what it runs).
LOAD_ON_DEMAND = {"xaikit.__init__", "xaikit.__main__", "xaikit.cli", "xaikit.demo", "xaikit.service",
                  "xaikit.inference", "xaikit.cluster"}


def _function_level_imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, imported xaikit module, line) for the imports made inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    inside = {n.lineno for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return [imp for imp in _imports(path) if imp[2] in inside]


def test_kit_imports_are_at_the_top_of_each_module():
    """Function-level imports of xaikit parts are kept only where loading on demand is the point (LOAD_ON_DEMAND) and
    for the Display-pattern exceptions in ALLOWED; everywhere else the dependencies show at the top of the module.
    (Optional third-party dependencies -- fastapi, distributed, mlflow, kaleido, quantus -- stay lazy.)"""
    lazy = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, target, line in _function_level_imports(path):
            home = module.removesuffix(".__init__")
            if any(home == m or home.startswith(m + ".") for m in LOAD_ON_DEMAND) or module == "xaikit.__init__":
                continue
            if (module, _part(target)) in ALLOWED:
                continue
            lazy.append(f"{module} (line {line}) imports {target} inside a function")
    assert not lazy, "move these imports to the top of their module:\n" + "\n".join(lazy)
