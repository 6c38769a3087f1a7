#!/usr/bin/env python3
"""Check: no import cycle between the source files of a crate.

Why: the library reads in layers (ops -> driver -> kernels -> ISA primitives, the
public types above the driver); a file that imports from a file that imports it
back ties two layers into one room, and nothing below may name anything above.

How: for each crate under crates/ (or the crate folders given), build its module
tree from each crate root in src/ (lib.rs, main.rs, src/bin/*.rs: each is its own
crate, with its own `crate::`) by following `mod name;` declarations (`name.rs` or
`name/mod.rs`; an inline `mod name { ... }` belongs to its file). Then read every
path a file names: the `use` declarations and the paths written in code, starting
with `crate::`, `super::` or `self::` (comments and string literals are skipped).
Each path resolves to the file that defines the item it names:
  - segments that name modules are followed down the tree;
  - a name a module re-exports (`pub use`, `pub(crate) use`, ...) is followed to
    its source, so `use crate::Error` depends on error.rs, not on lib.rs: a
    re-export is an alias, not an edge (nor is a `mod` declaration);
  - otherwise the item is the module's own, in the module's file.
A private `use` of a module (`use super::simd;`) is an edge to that module's file;
paths written through such a local alias later (`simd::avx2::X`) are not followed.
Every other file a file names is an edge; a strongly connected component of more
than one file is a cycle, reported with the lines that make its edges.

Usage: python3 .ci/import_cycles.py [CRATE_DIR...]   (default: every crates/*/)
Exit status 1 when any crate has a cycle.
"""
import os
import re
import sys

ITEM_KEYWORDS = {"fn", "struct", "enum", "trait", "type", "const", "static", "union", "mod"}


def strip_code(text):
    """`text` with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c in "rb" and re.match(r'(br|r|b)?#*"', text[i:i + 4]) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            m = re.match(r'(br|r|b)?(#*)"', text[i:])
            hashes = m.group(2)
            raw = "r" in (m.group(1) or "")
            j = i + m.end()
            end = '"' + hashes
            while j < n:
                if not raw and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(end, j):
                    j += len(end)
                    break
                j += 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|::|\n|[{}();,*#\[\]!=<>]|\S")


def tokens(code):
    """(token, line) pairs."""
    line = 1
    for m in TOKEN.finditer(code):
        t = m.group(0)
        if t == "\n":
            line += 1
        else:
            yield t, line


def parse_use_tree(toks, i):
    """Parse a use tree at toks[i]; returns (list of (path, alias), next index)."""
    prefix = []
    while i < len(toks):
        t = toks[i][0]
        if t == "{":
            i += 1
            out = []
            while toks[i][0] != "}":
                sub, i = parse_use_tree(toks, i)
                out += [(prefix + p, a) for p, a in sub]
                if toks[i][0] == ",":
                    i += 1
            return out, i + 1
        if t == "*":
            return [(prefix + ["*"], None)], i + 1
        if t == "::":
            i += 1
            continue
        if re.match(r"[A-Za-z_]", t):
            prefix.append(t)
            i += 1
            if i < len(toks) and toks[i][0] == "as":
                alias = toks[i + 1][0]
                return [(prefix, alias)], i + 2
            if i < len(toks) and toks[i][0] == "::":
                continue
            return [(prefix, prefix[-1])], i
        return [(prefix, prefix[-1] if prefix else None)], i
    return [(prefix, None)], i


class Module:
    def __init__(self, path, file):
        self.path = path  # tuple of names from the crate root
        self.file = file
        self.items = set()  # names defined here
        self.reexports = {}  # name -> absolute path (list)
        self.globs = []  # absolute module paths re-exported with `*`


class Crate:
    def __init__(self, root_file, src):
        self.src = src
        self.modules = {}  # path tuple -> Module
        self.refs = []  # (file, line, absolute path list, is_use)
        self.load((), root_file)

    def load(self, modpath, file):
        text = strip_code(open(file, encoding="utf-8").read())
        toks = list(tokens(text))
        self.parse(modpath, file, toks)

    def child_file(self, file, modpath, name):
        base = os.path.dirname(file)
        stem = os.path.basename(file)[:-3]
        if stem not in ("lib", "main", "mod") and modpath:
            base = os.path.join(base, stem)
        for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
            if os.path.exists(cand):
                return cand
        return None

    def parse(self, modpath, file, toks):
        stack = [(modpath, 0)]  # (module path, brace depth at which it opened)
        self.modules[modpath] = Module(modpath, file)
        depth = 0
        i = 0
        vis = False
        while i < len(toks):
            t, line = toks[i]
            cur = stack[-1][0]
            mod = self.modules[cur]
            if t == "{":
                depth += 1
                i += 1
                continue
            if t == "}":
                depth -= 1
                if len(stack) > 1 and depth == stack[-1][1]:
                    stack.pop()
                i += 1
                continue
            if t == "pub":
                vis = True
                i += 1
                if i < len(toks) and toks[i][0] == "(":
                    while toks[i][0] != ")":
                        i += 1
                    i += 1
                continue
            if t == "use" and (i == 0 or toks[i - 1][0] != "::"):
                trees, i = parse_use_tree(toks, i + 1)
                for path, alias in trees:
                    absolute = self.absolute(cur, path)
                    if absolute is None:
                        continue
                    if vis and depth == stack[-1][1]:
                        if path[-1] == "*":
                            mod.globs.append(absolute[:-1])
                        elif alias and alias != "self":
                            mod.reexports[alias] = absolute
                        elif alias == "self":
                            mod.reexports[path[-2]] = absolute[:-1]
                    else:
                        if absolute[-1] in ("*", "self"):
                            absolute = absolute[:-1]
                        self.refs.append((file, line, absolute, True))
                vis = False
                continue
            if t == "mod" and i + 2 < len(toks) and re.match(r"[A-Za-z_]", toks[i + 1][0]):
                name, nxt = toks[i + 1][0], toks[i + 2][0]
                mod.items.add(name)
                if nxt == ";":
                    child = self.child_file(file, cur, name)
                    if child:
                        self.load(cur + (name,), child)
                    i += 3
                elif nxt == "{":
                    self.modules[cur + (name,)] = Module(cur + (name,), file)
                    depth += 1
                    stack.append((cur + (name,), depth - 1))
                    i += 3
                else:
                    i += 2
                vis = False
                continue
            if t in ITEM_KEYWORDS and i + 1 < len(toks) and depth == stack[-1][1]:
                name = toks[i + 1][0]
                if re.match(r"[A-Za-z_]", name):
                    mod.items.add(name)
            if t == "macro_rules" and i + 2 < len(toks):
                mod.items.add(toks[i + 2][0])
            if (
                t in ("crate", "super", "self")
                and i + 1 < len(toks)
                and toks[i + 1][0] == "::"
                and (i == 0 or toks[i - 1][0] not in ("::", "$"))
            ):
                path, j = [t], i + 1
                while j + 1 < len(toks) and toks[j][0] == "::" and re.match(
                    r"[A-Za-z_]", toks[j + 1][0]
                ):
                    path.append(toks[j + 1][0])
                    j += 2
                absolute = self.absolute(cur, path)
                if absolute is not None:
                    self.refs.append((file, line, absolute, False))
                i = j
                vis = False
                continue
            vis = False
            i += 1

    def absolute(self, cur, path):
        """`path` written in module `cur`, from the crate root; None for external."""
        if not path:
            return None
        head = path[0]
        if head == "crate":
            return list(path[1:])
        if head == "self":
            return list(cur) + list(path[1:])
        if head == "super":
            base = list(cur)
            rest = list(path)
            while rest and rest[0] == "super":
                base = base[:-1]
                rest = rest[1:]
            return base + rest
        return None  # an external crate, a local name, or a std path

    def resolve(self, path, seen=None):
        """The file that defines the item `path` names."""
        seen = seen or set()
        key = tuple(path)
        if key in seen:
            return None
        seen.add(key)
        cur = ()
        for k, seg in enumerate(path):
            if cur + (seg,) in self.modules:
                cur = cur + (seg,)
                continue
            mod = self.modules.get(cur)
            if mod is None:
                return None
            if seg in mod.items:
                return mod.file
            if seg in mod.reexports:
                return self.resolve(mod.reexports[seg] + list(path[k + 1:]), seen)
            for g in mod.globs:
                f = self.resolve(list(g) + list(path[k:]), seen)
                if f is not None:
                    return f
            return mod.file
        return self.modules[cur].file if cur in self.modules else None


def tarjan(nodes, edges):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def check_crate(crate_dir, repo):
    src = os.path.join(crate_dir, "src")
    roots = [os.path.join(src, r) for r in ("lib.rs", "main.rs") if os.path.exists(os.path.join(src, r))]
    bindir = os.path.join(src, "bin")
    if os.path.isdir(bindir):
        roots += sorted(os.path.join(bindir, f) for f in os.listdir(bindir) if f.endswith(".rs"))
    cycles = 0
    for root in roots:
        crate = Crate(root, src)
        edges, why = {}, {}
        for file, line, path, _ in crate.refs:
            target = crate.resolve(path)
            if target is None or target == file:
                continue
            edges.setdefault(file, set()).add(target)
            why.setdefault((file, target), (line, "::".join(["crate"] + path)))
        nodes = {m.file for m in crate.modules.values()}
        rel = lambda f: os.path.relpath(f, repo)
        for comp in tarjan(nodes, edges):
            if len(comp) < 2:
                continue
            cycles += 1
            members = set(comp)
            print(f"{rel(root)}: import cycle between {len(comp)} files:")
            for f in sorted(members):
                for t in sorted(edges.get(f, ())):
                    if t in members:
                        line, p = why[(f, t)]
                        print(f"  {rel(f)}:{line} -> {rel(t)}  ({p})")
        print(f"{rel(root)}: {len(nodes)} files, {sum(len(e) for e in edges.values())} import edges")
    return cycles


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = sys.argv[1:] or sorted(
        os.path.join(repo, "crates", d)
        for d in os.listdir(os.path.join(repo, "crates"))
        if os.path.isdir(os.path.join(repo, "crates", d, "src"))
    )
    cycles = sum(check_crate(os.path.abspath(d), repo) for d in dirs)
    if cycles:
        print(f"FAIL: {cycles} import cycle(s)")
        return 1
    print("ok: no import cycle between the files of any crate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
