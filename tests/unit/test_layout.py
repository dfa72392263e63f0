"""The package layout holds: no import cycles, imports follow the stages, no module grows unchecked.

Pure and fast: every module under collector/ is read with `ast` (nothing of it is imported but the
commands table, collector/commands/__init__.py), and every import counts, at the top of a module or
inside a function, so a cycle hidden in a function shows; an import under `if TYPE_CHECKING:`
counts too (a type from another stage is a dependency on it).

The stages (README, "How data flows"): sources in `devices` feed the pure `core`; `delivery` spools
and sends through `api`; `capture` runs a session from devices through core to delivery; `review`
reads kept captures back; `commands` and `cli` sit on top. `errors` and the package's own
`__init__` (the version) are usable by all.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "collector"
MAX_LINES = 550
ONE_PIECE = "one piece"  # a longer module's docstring says why it stays one piece

SHARED = {"errors", ""}  # collector.errors, and collector itself (__version__)
# The stages each stage may import, besides itself and SHARED. None: any of them.
ALLOWED: dict[str, set[str] | None] = {
    "core": set(),
    "devices": {"core"},
    "api": {"core"},
    "delivery": {"api", "core"},
    "capture": {"devices", "core", "delivery", "api", "profiles"},
    "review": {"delivery", "core"},
    "profiles": {"core"},
    "sandbox": {"api", "core"},
    "commands": {"core", "devices", "delivery", "api", "capture", "review", "profiles", "sandbox"},
    "cli": None,
    "__main__": {"cli"},
    "errors": set(),
    "": set(),
    "data": set(),
    "templates": set(),
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module of ours
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_modules(root: Path) -> dict[str, Path]:
    """Every module of the package under `root` (the folder that holds `collector/`), by name."""
    return {module_name(root, p): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports of our own modules anywhere in `path`: top level, functions, classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..core import y
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from collector.api import redaction` imports the module collector.api.redaction.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import collector.core.chunk.x`: the module part
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] == PACKAGE and target != name:
                found.append(Import(name, target, node.lineno))
    return found


def import_graph(root: Path) -> tuple[dict[str, Path], list[Import]]:
    modules = read_modules(root)
    return modules, [i for name, path in modules.items() for i in imports_of(name, path, modules)]


def stage(module: str) -> str:
    """collector.core.chunk -> core; collector.cli -> cli; collector -> ""."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules (~100)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def describe_cycle(component: list[str], edges: list[Import]) -> str:
    inside = set(component)
    links = sorted({f"{e.source}:{e.line} -> {e.target}" for e in edges if {e.source, e.target} <= inside})
    return " | ".join(links)


def is_command(module: str) -> bool:
    """A command module (collector.commands.run), not the package or a private helper (_common)."""
    parts = module.split(".")
    return len(parts) == 3 and parts[1] == "commands" and not parts[2].startswith("_")


def rule_breaks(edges: list[Import]) -> list[str]:
    breaks = []
    for e in edges:
        src, dst = stage(e.source), stage(e.target)
        if src not in ALLOWED:
            breaks.append(f"{e.source}: stage {src!r} has no rule in tests/unit/test_layout.py")
            continue
        allowed = ALLOWED[src]
        if allowed is not None and dst != src and dst not in SHARED and dst not in allowed:
            breaks.append(f"{e.source}:{e.line} imports {e.target} ({src} may not import {dst})")
        if src == "commands" and dst == "cli":
            breaks.append(f"{e.source}:{e.line} imports {e.target} (commands never import the cli)")
        if src == "commands" and is_command(e.target):
            breaks.append(
                f"{e.source}:{e.line} imports {e.target} (a command imports no other command: move what "
                "they share into a private commands/_x.py module)"
            )
    return sorted(set(breaks))


def oversized(modules: dict[str, Path]) -> list[str]:
    found = []
    for name, path in modules.items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        docstring = " ".join((ast.get_docstring(ast.parse(text)) or "").split())
        if lines > MAX_LINES and ONE_PIECE not in docstring:
            found.append(f"{name}: {lines} lines (over {MAX_LINES}; split it, or say in its docstring why "
                         f"it is {ONE_PIECE})")  # fmt: skip
    return found


# ---- the checks, on this tree ------------------------------------------------------------------------


def test_no_import_cycles():
    _, edges = import_graph(REPO)
    cycles = find_cycles(edges)
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(
        describe_cycle(c, edges) for c in cycles
    )


def test_imports_follow_the_stages():
    _, edges = import_graph(REPO)
    breaks = rule_breaks(edges)
    assert not breaks, "imports against the dependency rule:\n" + "\n".join(breaks)


def test_no_module_is_over_550_lines_without_a_reason():
    modules, _ = import_graph(REPO)
    found = oversized(modules)
    assert not found, "\n".join(found)


def registered_commands(modules: dict[str, Path]) -> dict[str, str]:
    """{command: module} from the `subparsers.add_parser("NAME", ...)` calls in each command module's
    add_parser(subparsers) (a command's own sub-actions, like `workspace create`, are not commands)."""
    found = {}
    for name, path in modules.items():
        if not is_command(name):
            continue
        for fn in ast.parse(path.read_text(encoding="utf-8")).body:
            if not (isinstance(fn, ast.FunctionDef) and fn.name == "add_parser" and fn.args.args):
                continue
            subparsers = fn.args.args[0].arg
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_parser"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == subparsers
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    found[node.args[0].value] = name
    return found


def test_the_commands_table_names_each_command_with_its_module():
    """`collector --help` lists the table (collector/commands/__init__.py) without importing any
    command; `collector NAME` imports the module the table names. They must agree."""
    from collector.commands import COMMANDS

    modules, _ = import_graph(REPO)
    assert registered_commands(modules) == {name: info.module for name, info in COMMANDS.items()}


def test_every_stage_has_a_rule():
    modules, _ = import_graph(REPO)
    assert {stage(m) for m in modules} <= set(ALLOWED)


# ---- the checks themselves catch what they are for --------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_checks_catch_a_hidden_cycle_a_wrong_way_import_and_a_long_module(tmp_path):
    long_body = "x = 1\n" * (MAX_LINES + 1)
    write_tree(
        tmp_path,
        {
            "collector/__init__.py": "__version__ = '0'\n",
            "collector/errors.py": "",
            "collector/core/__init__.py": "",
            "collector/core/a.py": """
                def late():
                    from collector.devices import b  # against the rule, and a cycle with devices.b
                """,
            "collector/devices/__init__.py": "",
            "collector/devices/b.py": "from collector.core.a import late\nfrom ..errors import *\n",
            "collector/commands/__init__.py": "",
            "collector/commands/_common.py": "from collector.commands import x\n",
            "collector/commands/run.py": "from collector.commands._common import *\n",
            "collector/commands/fit.py": "def run():\n    from collector.commands.run import open_eeg\n",
            "collector/review/__init__.py": "",
            "collector/review/long.py": long_body,
            "collector/review/kept_long.py": '"""Kept as one piece: the reason."""\n' + long_body,
        },
    )
    modules, edges = import_graph(tmp_path)
    assert find_cycles(edges) == [["collector.core.a", "collector.devices.b"]]
    breaks = rule_breaks(edges)
    assert breaks == [
        "collector.commands.fit:2 imports collector.commands.run (a command imports no other command: "
        "move what they share into a private commands/_x.py module)",
        "collector.core.a:3 imports collector.devices.b (core may not import devices)",
    ]
    assert [line.split(":")[0] for line in oversized(modules)] == ["collector.review.long"]
    # ..errors (relative) resolves to collector.errors, which every stage may import
    assert Import("collector.devices.b", "collector.errors", 2) in edges


def test_an_offline_capture_command_does_not_import_the_http_stack():
    """`collector replay --offline` and `run --offline` never talk to the API: importing their
    commands must not pull in httpx, httpcore or the API client (0.3 s of CPU at each start,
    issue 23); those are imported where an uploader or a target check starts."""
    import subprocess
    import sys

    probe = (
        "import sys, collector.commands.replay, collector.commands.run; "
        "print(' '.join(m for m in ('httpx', 'httpcore', 'collector.api.client', "
        "'collector.delivery.uploader') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_webp_screenshot_loads_only_the_webp_plugin_of_pillow():
    """Encoding a screenshot and its local copy as WebP registers Pillow's WebP plugin alone: Pillow
    otherwise loads all its ~40 plugins to find it (66 ms of CPU in a capture's start, issue 23).
    A capture on X11 or offline never imports asyncio either (only the desktop portal uses it)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from PIL import Image\n"
        "from collector.devices.screen.image import encode_image\n"
        "from collector.core.screen_copy import copy_of_image, copy_of_screenshot\n"
        "import collector.commands.replay, collector.commands.run\n"
        "data = encode_image(Image.new('RGB', (800, 450), (20, 90, 160)), 'webp', 75)\n"
        "copy, again = copy_of_screenshot(data), copy_of_image(Image.new('RGB', (800, 450)))\n"
        "assert data[8:12] == b'WEBP' and copy[8:12] == b'WEBP' and again[8:12] == b'WEBP'\n"
        "unwanted = ('PIL.PdfImagePlugin', 'PIL.TiffImagePlugin', 'asyncio')\n"
        "print(' '.join(m for m in unwanted if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
