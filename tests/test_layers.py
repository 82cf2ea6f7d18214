"""The package's layers run one way: a module imports only its own layer or those below.

Every import counts: top-of-file and function-local, absolute and relative, and
`__import__` / `importlib.import_module` of a package module. Pure `ast`, nothing is imported.
"""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kalavai_utils"

# bottom to top; a module's layer is its longest matching prefix here
LAYERS = {
    # 0 foundation
    "errors": 0,
    "families": 0,
    "storage": 0,
    "paper": 0,
    "scales": 0,
    "settings": 0,
    "verdicts": 0,
    # 1 offline data generators and execution machinery
    "corpora": 1,
    "runtime": 1,
    # 2 the paper's protocol
    "protocol": 2,
    # 3 running each notebook's cooperatives
    "experiments": 3,
    # 4 tables, figures and statistics of every notebook
    "analysis": 4,
    # 5 export / compare, the notebook runner, the GPU check, the command line, the package's own __init__
    "reports": 5,
    "notebooks": 5,
    "gpu_check": 5,
    "__main__": 5,
    "": 5,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layer_of(name: str) -> int | None:
    """Rank of a module named relative to the package ('' is the package itself)."""
    parts = name.split(".") if name else []
    for n in range(len(parts), -1, -1):
        key = ".".join(parts[:n])
        if key in LAYERS and (n or not parts):
            return LAYERS[key]
    return None


def _resolve(module: str, level: int, package: str) -> str | None:
    """An import's target relative to the package root; None when outside the package."""
    if level:
        base = package.split(".") if package else []
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))
    if module == "kalavai_utils":
        return ""
    if module.startswith("kalavai_utils."):
        return module[len("kalavai_utils.") :]
    return None


def imports_of(name: str, path: Path, modules) -> list[tuple[str, int]]:
    """(imported module, line) for every package module that `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [_resolve(a.name, 0, package) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package)
            if base is not None:  # `from X import m` imports module X.m when there is one
                targets = [
                    f"{base}.{a.name}".lstrip(".") if f"{base}.{a.name}".lstrip(".") in modules else base
                    for a in node.names
                ]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called in ("__import__", "import_module") and isinstance(node.args[0].value, str):
                target = node.args[0].value
                level = len(target) - len(target.lstrip("."))
                targets = [_resolve(target.lstrip("."), level, package)]
        out += [(t, node.lineno) for t in targets if t is not None]
    return out


def upward_imports() -> list[str]:
    modules = _modules()
    bad = []
    for name, path in sorted(modules.items()):
        rank = layer_of(name)
        if rank is None:
            bad.append(f"{name}: not in the layer table")
            continue
        for target, line in imports_of(name, path, modules):
            if target == "" and name:
                continue  # the package itself: every submodule's import runs it anyway
            target_rank = layer_of(target)
            if target_rank is None or target_rank > rank:
                bad.append(f"{name} -> {target} (line {line}; layer {rank} imports layer {target_rank})")
    return bad


def test_no_module_imports_a_higher_layer():
    bad = upward_imports()
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_walk_sees_function_local_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "kalavai_utils"
    (pkg / "protocol").mkdir(parents=True)
    (pkg / "analysis").mkdir()
    (pkg / "protocol" / "data.py").write_text(
        "def f():\n    from ..analysis import report\n    __import__('kalavai_utils.analysis.report')\n"
    )
    (pkg / "analysis" / "report.py").write_text("from ..protocol import data\n")
    (pkg / "errors.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert upward_imports() == [
        "protocol.data -> analysis.report (line 2; layer 2 imports layer 4)",
        "protocol.data -> analysis.report (line 3; layer 2 imports layer 4)",
    ]


def test_every_layer_is_a_listed_package():
    """Each folder of the package is a layer of the table and a package the wheel holds."""
    import tomllib

    packages = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and any(p.glob("*.py")))
    assert folders and all(f in LAYERS for f in folders), folders
    assert sorted(packages) == sorted(["kalavai_utils"] + [f"kalavai_utils.{f}" for f in folders])
