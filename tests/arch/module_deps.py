#!/usr/bin/env python3
"""Dependencies between the modules of a crate run one way: no cycles, and no layer depends on
a later one.

Usage: module_deps.py CRATE_SRC_DIR[=LAYER,LAYER,...]...
  e.g. module_deps.py filter/src=scan,mcp,auth record/src

LAYERs are top-level modules, lowest first: a module under one may depend only on modules under
itself or earlier layers (top-level modules not listed are not checked for layering).

Every file of a crate is a module (`lib.rs`/`main.rs` is the crate root, `x.rs` and `x/mod.rs`
are `x`). Module A depends on module B when A names an item of B: a `use` declaration or a path
in code (`crate::a::b`, `super::x`, `self::x`, or a child module's name). A path through a
module's `pub use` re-export counts as a dependency on the module the item comes from, so a
parent that re-exports its children's items does not depend on itself. Ignored: edges from a
module to its own test modules, references made by inline test modules (`#[cfg(test)] mod
tests {}`, whose helpers other test modules share), comments and string literals. Any cycle or
layer violation is printed with one reference per edge, and the exit status is 1.

`cargo modules dependencies --acyclic` would be the tool for this, but its last release that
builds with this toolchain (0.27) takes about 11 CPU minutes to build and 2 minutes per crate
to run, and it checks items, not modules (a type and its own method are reported as a cycle).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

TOKEN = re.compile(
    r"""
      (?P<line_comment>//[^\n]*)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<raw_string>b?r(?P<hashes>\#*)".*?"(?P=hashes))
    | (?P<string>b?"(?:\\.|[^"\\])*")
    | (?P<char>b?'(?:\\.|[^'\\])')
    """,
    re.VERBOSE | re.DOTALL,
)
MOD_DECL = re.compile(r"(?:#\[cfg\(test\)\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")
CFG_TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*[;{]")
INLINE_MOD = re.compile(r"(#\[cfg\(test\)\]\s*)?\bmod\s+\w+\s*\{")
ITEM = r"\b(?:struct|enum|union|trait|type|fn|const|static|mod|macro_rules!)\s+{}\b"
USE_DECL = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")
PATH = re.compile(r"(?<![\w:])((?:crate|super|self|[a-z_][a-z0-9_]*)(?:\s*::\s*(?:\w+|\{))+)")


def strip(text: str) -> str:
    """The source without comments and literals (newlines kept, so line numbers hold)."""
    def blank(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))

    return TOKEN.sub(blank, text)


@dataclass
class Module:
    path: tuple[str, ...]
    file: Path
    code: str
    children: set[str] = field(default_factory=set)
    test_children: set[str] = field(default_factory=set)
    # name -> absolute path of the item it re-exports
    reexports: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # modules whose every public item this one re-exports (`pub use x::*`)
    glob_reexports: list[tuple[str, ...]] = field(default_factory=list)
    # (start, end) of each inline module's body (`mod tests { ... }`)
    inline: list[tuple[int, int]] = field(default_factory=list)
    # the same of the inline `#[cfg(test)]` modules
    inline_tests: list[tuple[int, int]] = field(default_factory=list)

    def depth(self, offset: int) -> int:
        """How many inline modules enclose `offset`."""
        return sum(start <= offset <= end for start, end in self.inline)

    def defines(self, item: str) -> bool:
        return re.search(ITEM.format(re.escape(item)), self.code) is not None


def expand_use(tree: str) -> list[list[str]]:
    """`a::{b, c::{d, self}}` -> [[a, b], [a, c, d], [a, c]]."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", tree))

    def parse(s: str, prefix: list[str]) -> list[list[str]]:
        if "{" not in s:
            segs = [p for p in s.split("::") if p]
            if segs and segs[-1] == "self":
                segs = segs[:-1]
            return [prefix + segs]
        head, rest = s.split("{", 1)
        inner = rest[: rest.rfind("}")]
        base = prefix + [p for p in head.split("::") if p]
        parts, depth, cur = [], 0, ""
        for ch in inner:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        parts.append(cur)
        out: list[list[str]] = []
        for part in filter(None, parts):
            out += parse(part, base)
        return out

    return parse(tree, [])


class Crate:
    def __init__(self, src: Path) -> None:
        self.src = src
        self.modules: dict[tuple[str, ...], Module] = {}
        root = src / "lib.rs" if (src / "lib.rs").exists() else src / "main.rs"
        self.load((), root)

    def load(self, path: tuple[str, ...], file: Path) -> None:
        code = strip(file.read_text())
        module = Module(path, file, code)
        self.modules[path] = module
        module.test_children = set(CFG_TEST_MOD.findall(code))
        own_dir = file.parent if file.name in ("lib.rs", "main.rs", "mod.rs") else file.with_suffix("")
        for name in MOD_DECL.findall(code):
            module.children.add(name)
            for candidate in (own_dir / f"{name}.rs", own_dir / name / "mod.rs"):
                if candidate.exists():
                    self.load(path + (name,), candidate)
                    break
        # inline modules (`mod tests { ... }`) count as part of this file's module
        for m in INLINE_MOD.finditer(code):
            body = (m.end() - 1, _matching_brace(code, m.end() - 1))
            module.inline.append(body)
            if m.group(1):
                module.inline_tests.append(body)
        for m in USE_DECL.finditer(code):
            if m.group(1):
                for segs in expand_use(m.group(2)):
                    absolute = self.absolute(module, segs, module.depth(m.start()))
                    if absolute is None:
                        continue
                    if segs[-1] == "*":
                        module.glob_reexports.append(absolute[:-1])
                    else:
                        module.reexports[segs[-1]] = absolute

    def absolute(self, module: Module, segs: list[str], depth: int = 0) -> tuple[str, ...] | None:
        """The crate-absolute path `segs` names from `module` (inside `depth` inline modules),
        or None (another crate)."""
        if not segs:
            return None
        while depth and segs and segs[0] == "super":
            segs, depth = segs[1:], depth - 1
        if depth and segs and segs[0] == "self":
            segs = segs[1:]
        if not segs:
            return module.path
        base = list(module.path)
        if segs[0] == "crate":
            return tuple(segs[1:])
        if segs[0] == "self":
            return tuple(base + segs[1:])
        if segs[0] == "super":
            while segs and segs[0] == "super":
                if not base:
                    return None
                base.pop()
                segs = segs[1:]
            return tuple(base + segs)
        if segs[0] in module.children:
            return tuple(base + segs)
        return None

    def owner(self, path: tuple[str, ...], seen: int = 0) -> tuple[str, ...]:
        """The module that defines the item at `path` (following `pub use` re-exports)."""
        i = len(path)
        while i > 0 and path[:i] not in self.modules:
            i -= 1
        module = self.modules[path[:i]]
        if i == len(path) or seen > 16 or module.defines(path[i]):
            return path[:i]
        target = module.reexports.get(path[i])
        if target is None:
            glob = [g for g in module.glob_reexports if g in self.modules and self.modules[g].defines(path[i])]
            target = glob[0] + (path[i],) if glob else None
        if target is None or target == path[: i + 1]:
            return path[:i]
        return self.owner(target + path[i + 1 :], seen + 1)

    def edges(self) -> dict[tuple[str, ...], dict[tuple[str, ...], str]]:
        graph: dict[tuple[str, ...], dict[tuple[str, ...], str]] = {p: {} for p in self.modules}
        for module in self.modules.values():
            for m in PATH.finditer(module.code):
                text = m.group(1)
                segs = [s for s in re.split(r"\s*::\s*", text) if s and s != "{"]
                if segs[0] not in ("crate", "super", "self") and segs[0] not in module.children:
                    continue
                if len(segs) == 1:
                    continue
                if any(start <= m.start() <= end for start, end in module.inline_tests):
                    continue
                depth = module.depth(m.start())
                absolute = self.absolute(module, segs, depth)
                if absolute is None:
                    continue
                # a use tree's inner names belong to it too
                if text.endswith("{"):
                    end = _matching_brace(module.code, m.end() - 1)
                    for sub in expand_use(text + module.code[m.end() : end + 1]):
                        sub_abs = self.absolute(module, sub, depth)
                        if sub_abs is not None:
                            self.add(graph, module, sub_abs, m.start())
                    continue
                self.add(graph, module, absolute, m.start())
        return graph

    def add(self, graph, module: Module, absolute: tuple[str, ...], offset: int) -> None:
        target = self.owner(absolute)
        inner = target[len(module.path) :] if target[: len(module.path)] == module.path else None
        if inner is not None and (not inner or inner[0] in module.test_children):
            return
        line = module.code.count("\n", 0, offset) + 1
        graph[module.path].setdefault(target, f"{module.file}:{line}")


def _matching_brace(code: str, start: int) -> int:
    depth = 0
    for i in range(start, len(code)):
        depth += code[i] == "{"
        depth -= code[i] == "}"
        if depth == 0:
            return i
    return len(code) - 1


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def name(path: tuple[str, ...]) -> str:
    return "::".join(("crate",) + path)


def layer_violations(graph, layers: list[str]) -> list[str]:
    rank = {layer: i for i, layer in enumerate(layers)}
    out = []
    for a, targets in sorted(graph.items()):
        for b, where in sorted(targets.items()):
            if a and b and a[0] in rank and b[0] in rank and rank[a[0]] < rank[b[0]]:
                out.append(f"  {name(a)} -> {name(b)}  ({where})")
    return out


def main(args: list[str]) -> int:
    failed = False
    for arg in args:
        d, _, layer_list = arg.partition("=")
        layers = [layer for layer in layer_list.split(",") if layer]
        crate = Crate(Path(d))
        unknown = [layer for layer in layers if (layer,) not in crate.modules]
        if unknown:
            print(f"{d}: no top-level module {', '.join(unknown)}")
            failed = True
            continue
        graph = crate.edges()
        found = cycles(graph)
        against = layer_violations(graph, layers)
        count = sum(len(e) for e in graph.values())
        if not found and not against:
            order = f", layers {' < '.join(layers)}" if layers else ""
            print(f"{d}: {len(graph)} modules, {count} dependencies, no cycle{order}")
            continue
        failed = True
        for comp in found:
            members = set(comp)
            print(f"{d}: cycle between {', '.join(sorted(name(c) for c in comp))}")
            for a in sorted(comp):
                for b, where in sorted(graph[a].items()):
                    if b in members:
                        print(f"  {name(a)} -> {name(b)}  ({where})")
        if against:
            print(f"{d}: a layer depends on a later one ({' < '.join(layers)})")
            print("\n".join(against))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
