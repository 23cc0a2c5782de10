#!/usr/bin/env python3
"""layers.py - check that src/ keeps its layers (run by "meson test" as the test "layers").

    layers.py SRC NAME:DEP,DEP ...

Each NAME:DEPS argument is one directory of SRC and the directories it may use (meson.build's
layer_table, in order: a layer names only layers above it in the table). Fails, naming the file
and line, when
  - a directory of SRC is not in the table, or the table names one that does not exist;
  - the table has a cycle, or a layer names one declared after it;
  - two directories hold a header of the same name (an include could not say which);
  - a file includes a header ("x.h") of a directory that is neither its own nor one its layer
    may use, directly or through the layers it uses: an arrow pointing up or sideways;
  - a quoted include names a header found in no directory of SRC.
Prints "layers: ok (N files, M includes)" otherwise.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    src = argv[1]
    order, deps = [], {}
    errors = []
    for spec in argv[2:]:
        name, _, rest = spec.partition(':')
        names = [d for d in rest.split(',') if d]
        for d in names:
            if d not in deps:
                errors.append(f"layer {name} uses {d}, which is not declared before it")
        order.append(name)
        deps[name] = names
    dirs = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    for d in dirs:
        if d not in deps:
            errors.append(f"src/{d} is not in meson.build's layer_table")
    for d in order:
        if d not in dirs:
            errors.append(f"layer {d} has no directory src/{d}")

    # what each layer may use: its own directory and everything below it, transitively
    # (declaring only layers above itself in the table rules out cycles)
    reach = {}
    for name in order:
        r = {name}
        for d in deps[name]:
            r |= reach.get(d, {d})
        reach[name] = r

    home = {}
    for d in dirs:
        for f in os.listdir(os.path.join(src, d)):
            if f.endswith('.h'):
                if f in home:
                    errors.append(f"header {f} is in both src/{home[f]} and src/{d}")
                home[f] = d

    nfiles = nincl = 0
    for d in dirs:
        for f in sorted(os.listdir(os.path.join(src, d))):
            if not f.endswith(('.c', '.h')):
                continue
            nfiles += 1
            path = os.path.join(src, d, f)
            with open(path, encoding='utf-8', errors='replace') as fh:
                text = fh.read()
            for m in INCLUDE.finditer(text):
                nincl += 1
                line = text.count('\n', 0, m.start()) + 1
                hdr = m.group(1)
                where = f"src/{d}/{f}:{line}"
                if '/' in hdr:
                    errors.append(f"{where}: include \"{hdr}\" names a path; name the header")
                    continue
                if os.path.exists(os.path.join(src, d, hdr)):
                    continue
                owner = home.get(hdr)
                if owner is None:
                    errors.append(f"{where}: \"{hdr}\" is in no directory of src/")
                elif owner not in reach.get(d, {d}):
                    errors.append(f"{where}: {d} includes {owner}/{hdr}, but layer {d} may "
                                  f"use only {', '.join(sorted(reach.get(d, {d})))}")
    for e in errors:
        print("layers:", e)
    if errors:
        print(f"layers: {len(errors)} violation(s)")
        return 1
    print(f"layers: ok ({nfiles} files, {nincl} includes)")
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
