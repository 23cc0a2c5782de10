#!/usr/bin/python3
"""conf-man.py README TEMPLATE OUT - write postino.conf(5): TEMPLATE with the line @SETTINGS@
replaced by README.md's settings table (| key | default | meaning |) in man(7) markup, so the
man page lists exactly the settings the README documents."""
import re
import sys


def troff(text):
    """Markdown cell text to man(7): `code` in bold, backslashes and quotes escaped."""
    text = text.replace("\\", "\\e").replace("'", "\\(aq")
    text = re.sub(r"`([^`]*)`", lambda m: "\\fB" + m.group(1) + "\\fR", text)
    return "\\&" + text if text.startswith(".") else text   # not a request line


def settings(readme):
    out, in_table = [], False
    for line in open(readme, encoding="utf-8"):
        if line.startswith("| key | default | meaning |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if not in_table or line.startswith("|---"):
            continue
        # split at the pipes outside `code` (an even number of backticks follows)
        row = line.strip()[1:-1]
        cells = [c.strip() for c in re.split(r"\|(?=(?:[^`]*`[^`]*`)*[^`]*$)", row)]
        if len(cells) != 3:
            sys.exit("conf-man.py: %s: a settings row without 3 cells: %s" % (readme, line))
        keys = re.findall(r"`([^`]*)`", cells[0])
        head = ", ".join("\\fB%s\\fR" % k for k in keys)
        if cells[1]:
            head += " (default: %s)" % troff(cells[1])
        out += [".TP", head, troff(cells[2])]
    if not out:
        sys.exit("conf-man.py: no settings table in " + readme)
    return "\n".join(out) + "\n"


def main():
    readme, template, dest = sys.argv[1:4]
    text = open(template, encoding="utf-8").read()
    if "@SETTINGS@\n" not in text:
        sys.exit("conf-man.py: no @SETTINGS@ line in " + template)
    with open(dest, "w", encoding="utf-8") as f:
        f.write(text.replace("@SETTINGS@\n", settings(readme)))


main()
