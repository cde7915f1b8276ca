"""cfuncs: the function definitions of a C file, found well enough for the tree's checks.

Not a C parser: comments, string and character literals are blanked (line numbers kept), then a
`{` at file level whose statement ends in `)` with no `=` before it opens a function body. That
holds for this tree's style (clang-formatted, no K&R definitions, no functions returning
function pointers). Used by scripts/check-audit-builders and scripts/function-lengths.
"""
import os
import re

_NAME = re.compile(r"([A-Za-z_]\w*)\s*\(")
SKIP_DIRS = {".git", "docs", "scripts"}


def blank(text):
    """text with comments, strings and character literals replaced by spaces (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(text):
    """[(name, first line, last line, body, head)] for each function definition; lines are
    1-based and name the lines of the opening and closing brace; body is the blanked text
    between them, head the blanked signature."""
    src = blank(text)
    # preprocessor lines do not end statements (their text is dropped, line breaks kept)
    src = re.sub(r"(?m)^[ \t]*#.*(?:\\\n.*)*$", lambda m: re.sub(r"[^\n]", " ", m.group(0)), src)
    found, depth, head_start, i, m, start, head = [], 0, 0, 0, None, 0, ""
    while i < len(src):
        c = src[i]
        if depth == 0 and c in ";}":
            head_start = i + 1
        elif c == "{":
            if depth == 0:
                head = src[head_start:i]
                m = None
                if head.rstrip().endswith(")") and "=" not in head:
                    m = _NAME.search(head)
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                if m:
                    first = src.count("\n", 0, start) + 1
                    last = first + src.count("\n", start, i)
                    found.append((m.group(1), first, last, src[start + 1:i], head.strip()))
                    m = None
                head_start = i + 1
        i += 1
    return found


def sources(root, exts=(".c",)):
    """Relative paths of the tree's C files (build directories, tests' generated files and the
    folders in SKIP_DIRS left out), sorted."""
    res = []
    for dp, dn, fn in os.walk(root):
        rel = os.path.relpath(dp, root)
        dn[:] = sorted(d for d in dn if not d.startswith((".", "build")) and d not in SKIP_DIRS)
        for f in fn:
            if f.endswith(exts):
                res.append(os.path.normpath(os.path.join(rel, f)))
    return sorted(res)
