#!/usr/bin/env python3
"""The layer rules of ARCHITECTURE.md ("Layers (turn 2)"), checked on the
source: which top-level module of src/ imports which.

    core ← app ← link ← channels/services ← daemon
    core, link ← board ← biometrics, video (the hardware side)

An edge a → b is any path into `crate::b` written in a file of module `a`
(`use crate::b::…`, `use crate::{b, c::…}` groups, `crate::b::x` in
expressions and types, `super::…` chains that climb to the crate root).
Comments and string literals are ignored; `#[cfg(test)]` code counts (a
test module is part of its module). The binaries (src/main.rs,
src/bin/*.rs) are checked for their `latchd::` paths.

Prints the module graph, then every violation; exits 1 if there is one.
"""
import os
import re
import sys
from collections import defaultdict

# Channels and services: they reach the lock only through `link`.
CHANNELS = {"ble", "remote", "dbus", "wifi", "video", "matter", "update"}

RULES_TEXT = """\
rules:
  1. nothing outside src/daemon/ and src/main.rs imports `daemon`
  2. channels ({channels}) never import `store`
  3. `core` imports nothing
  4. `app` imports none of link, daemon, board, the channels
  5. `board` imports only `core` and `link`
  6. no import cycle spans two top-level modules
  7. `biometrics` and `video` import only `board`, `core` and `link`""".format(channels=", ".join(sorted(CHANNELS)))


def strip(text):
    """Source without comments, string and char literals (they may mention
    `crate::daemon` without importing it)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 40]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            i += len(re.match(r"'(\\.|[^\\'])'", text[i:i + 4]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_items(body):
    """Top-level items of a `{…}` use group."""
    items, depth, cur = [], 0, []
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        items.append("".join(cur).strip())
    return items


def inline_depths(text):
    """For each position of `text`, how many inline `mod name { … }`
    blocks enclose it (a `super::` there climbs out of those first)."""
    depths = [0] * (len(text) + 1)
    opens = {m.end() - 1 for m in re.finditer(r"\bmod\s+\w+\s*\{", text)}
    stack, brace, inline = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            brace += 1
            if i in opens:
                stack.append(brace)
                inline += 1
        elif ch == "}":
            if stack and stack[-1] == brace:
                stack.pop()
                inline -= 1
            brace -= 1
        depths[i] = inline
    return depths


def referenced(text, root, module_depth):
    """Top-level modules `text` refers to through `root::` paths (`crate`
    inside the library, `latchd` in the binaries)."""
    refs = set()
    for m in re.finditer(r"\b" + root + r"::\{(.*?)\}\s*;", text, re.S):
        for item in group_items(m.group(1)):
            name = re.match(r"(\w+)", item)
            if name:
                refs.add(name.group(1))
    for m in re.finditer(r"\b" + root + r"::(\w+)", text):
        refs.add(m.group(1))
    if root == "crate":
        depths = inline_depths(text)
        for m in re.finditer(r"\b((?:super::)+)(\w+)", text):
            if m.group(1).count("super") >= module_depth + depths[m.start()]:
                refs.add(m.group(2))
    refs.discard("self")
    return refs


def scan(src):
    """edges[a][b] = files of `a` that import `b`."""
    edges = defaultdict(lambda: defaultdict(set))
    for dirpath, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src)
            parts = rel[:-3].split(os.sep)
            text = strip(open(path, encoding="utf-8").read())
            if parts[0] == "bin" or rel == "main.rs":
                top = "main" if rel == "main.rs" else "bin/" + parts[-1]
                for b in referenced(text, "latchd", 0):
                    edges[top][b].add(rel)
                continue
            if rel == "lib.rs":
                continue
            top = parts[0]
            module = parts[:-1] if parts[-1] == "mod" else parts
            for b in referenced(text, "crate", len(module)):
                if b != top:
                    edges[top][b].add(rel)
    return edges


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def violations(edges):
    found = []

    def bad(rule, a, b):
        files = ", ".join(sorted(edges[a][b]))
        found.append(f"  rule {rule}: {a} → {b}  ({files})")

    for a in sorted(edges):
        for b in sorted(edges[a]):
            if b == "daemon" and a != "main":
                bad(1, a, b)
            if a in CHANNELS and b == "store":
                bad(2, a, b)
            if a == "core":
                bad(3, a, b)
            if a == "app" and (b in {"link", "daemon", "board"} or b in CHANNELS):
                bad(4, a, b)
            if a == "board" and b not in {"core", "link"}:
                bad(5, a, b)
            if a in {"biometrics", "video"} and b not in {"board", "core", "link"}:
                bad(7, a, b)
    lib = {a: set(bs) for a, bs in edges.items() if a != "main" and not a.startswith("bin/")}
    for comp in cycles(lib):
        inner = sorted(
            f"{a} → {b} ({', '.join(sorted(edges[a][b]))})"
            for a in comp
            for b in edges[a]
            if b in comp
        )
        found.append("  rule 6: cycle " + " ⇄ ".join(comp) + "\n      " + "\n      ".join(inner))
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    edges = scan(os.path.join(root, "src"))
    print("module graph (a → what a imports):")
    for a in sorted(edges):
        print(f"  {a:<14} → {' '.join(sorted(edges[a]))}")
    found = violations(edges)
    if found:
        print()
        print(RULES_TEXT)
        print()
        print(f"{len(found)} layer violation(s):")
        print("\n".join(found))
        return 1
    print("layers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
