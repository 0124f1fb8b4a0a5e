#!/usr/bin/env python3
"""Issue 12's structural rules, checked: no source file of engine/src, control/src or src over 600
lines before its tests, and no import circle between modules, by `use` or by path (`crate::`,
`super::`, `self::`), tests excluded. `crate::X` where the root re-exports X leads to the module X
comes from. A parent naming its own child by bare name (`child::X`) is not counted: a module and
the children it declares are one unit, as the Rust book's layout has it. Inline modules (`mod x {`
inside a file) are not modules of their own here: their paths count for the file.

Issue 22's rules for doc/STRUCTURE.md, checked too: the rows of its table(s) are sorted by their
first path (byte order, as `git ls-files` lists paths); every tracked source file (see
`is_source`) is covered by a row, naming it or a folder above it (`dir/`); every path a row names
exists. A row's first path is from the repository root; a later path in the same cell is too when
it begins with a top-level entry of the repository, else it lies beside the first
(`control/src/node/config.rs`, `secrets.rs`)."""
import os, re, subprocess, sys
from itertools import chain

LIMIT = 600
CRATES = {"engine/src": "lib.rs", "control/src": "lib.rs", "src": "main.rs", "kernels/src": "lib.rs"}
SIZE_CHECKED = ("engine/src", "control/src", "src")

TESTS = re.compile(r"^#\[cfg\(test\)\]\s*\n(?:#\[[^\n]*\]\s*\n)*(?:pub(?:\([\w:]+\))? )?mod \w+ \{", re.M)

def strip_tests(text):
    """The file up to its inline test module (a top-level `#[cfg(test)] mod x {`, at the end by
    habit) and with comments removed. A `#[cfg(test)]` on anything else (`mod x;`, an item
    inside an impl) does not cut the file."""
    m = TESTS.search(text)
    body = text[: m.start()] if m else text
    body = re.sub(r"//[^\n]*", "", body)
    return body

def modules(root, top):
    """module path (tuple) -> file, for the crate at root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root)
            parts = rel[:-3].split(os.sep)
            if rel == top:
                parts = []
            elif parts[-1] == "mod":
                parts = parts[:-1]
            out[tuple(parts)] = os.path.join(root, rel)
    return out

def resolve(mods, path):
    """The longest module prefix of `path` (a tuple of names)."""
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return ()

PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::\w+)*)::\{([^;]*)\};", re.S)

REEXPORT = re.compile(r"^\s*pub use (\w+(?:::\w+)*?)(?:::\{([^;]*)\}|::(\w+));", re.M)

def root_names(mods):
    """What the crate root re-exports (`pub use a::b::{X, Y}`): name -> the module it comes from,
    so that `crate::X` leads to where X lives, not to the root."""
    out = {}
    text = strip_tests(open(mods[()], encoding="utf-8").read())
    for path, group, single in REEXPORT.findall(text):
        src = resolve(mods, path.split("::"))
        for name in (re.findall(r"\w+", group) if group else [single]):
            out[name] = src
    return out

def edges(mods):
    g = {m: set() for m in mods}
    names = root_names(mods)
    for mod, file in mods.items():
        text = strip_tests(open(file, encoding="utf-8").read())
        def base(kw):
            if kw == "crate":
                return ()
            return mod if kw == "self" else mod[:-1]  # super
        targets = []
        for kw, rest in PATH.findall(text):
            targets.append(base(kw) + tuple(rest.strip(":").split("::")))
        for kw, rest, inner in GROUP.findall(text):
            prefix = base(kw) + tuple(x for x in rest.split("::") if x)
            for item in re.findall(r"(\w+(?:::\w+)*)", inner):
                targets.append(prefix + tuple(item.split("::")))
        for t in targets:
            if len(t) >= 1 and t[0] in names and tuple(t[:1]) not in mods:
                t = names[t[0]] + tuple(t[1:])
            r = resolve(mods, list(t))
            if r != mod:
                g[mod].add(r)
    return g

def cycles(g):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)
    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            visit(v)
    return out

STRUCTURE = "doc/STRUCTURE.md"
SOURCE_SUFFIXES = (".rs", ".py", ".sh", ".cu", ".h", ".cpp", ".toml", ".yaml", ".yml")

def tracked():
    """Tracked files: path -> git mode (100755 for an executable)."""
    out = subprocess.run(["git", "ls-files", "-s", "-z"], capture_output=True, check=True).stdout
    files = {}
    for entry in out.decode("utf-8").split("\0"):
        if entry:
            meta, path = entry.split("\t", 1)
            files[path] = meta.split()[0]
    return files

def is_source(path, mode):
    """A source file that needs a row: code, build and config files, Dockerfiles and every
    executable script (`.ci/run`, `hw-ci/bundle`, ...)."""
    name = path.rsplit("/", 1)[-1]
    return path.endswith(SOURCE_SUFFIXES) or name.startswith("Dockerfile") or mode == "100755"

def structure_rows(text):
    """(line number, [paths]) of every table row whose first cell names paths, header and rule
    rows skipped."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|") or re.match(r"^\|[\s:|-]+\|$", line):
            continue
        cell = line.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        if names:
            rows.append((n, names))
    return rows

def row_paths(names, top):
    """The repository paths a row's first cell names (see the module's doc)."""
    first = names[0]
    base = first.rstrip("/").rsplit("/", 1)[0] + "/" if "/" in first.rstrip("/") else ""
    out = [first]
    for name in names[1:]:
        out.append(name if name.split("/", 1)[0] in top else base + name)
    return out

def check_structure():
    """Problems with doc/STRUCTURE.md's table(s), one message each."""
    files = tracked()
    top = {p.split("/", 1)[0] for p in files}
    text = open(STRUCTURE, encoding="utf-8").read()
    problems, covered, previous = [], [], None
    for n, names in structure_rows(text):
        paths = row_paths(names, top)
        if previous is not None and paths[0] < previous[1]:
            problems.append(f"{STRUCTURE}:{n}: row `{paths[0]}` is out of order: it sorts before "
                            f"`{previous[1]}` (line {previous[0]}); rows are sorted by their first path")
        previous = (n, paths[0])
        for p in paths:
            if p.endswith("/"):
                exists = any(f.startswith(p) for f in files)
            else:
                exists = p in files or os.path.exists(p)
            if not exists:
                problems.append(f"{STRUCTURE}:{n}: row names `{p}`, which does not exist")
            covered.append(p)
    for f, mode in sorted(files.items()):
        if is_source(f, mode) and not any(f == p or (p.endswith("/") and f.startswith(p)) for p in covered):
            problems.append(f"{STRUCTURE}: no row for `{f}`: add one (path and what it is for)")
    return problems

def main():
    bad = 0
    for root in SIZE_CHECKED:
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.endswith(".rs"):
                    p = os.path.join(dirpath, f)
                    lines = strip_tests(open(p, encoding="utf-8").read()).count("\n")
                    if lines > LIMIT:
                        print(f"{p}: {lines} lines before its tests (at most {LIMIT})")
                        bad += 1
    for root, top in CRATES.items():
        mods = modules(root, top)
        for comp in cycles(edges(mods)):
            names = sorted("::".join(m) or "(crate root)" for m in comp)
            print(f"{root}: import circle between {', '.join(names)}")
            bad += 1
    for problem in check_structure():
        print(problem)
        bad += 1
    if bad:
        sys.exit(1)
    print("structure: no file over", LIMIT, "lines before its tests; no import circle;",
          STRUCTURE, "sorted, a row for every source file, no row naming a missing path")

if __name__ == "__main__":
    main()
