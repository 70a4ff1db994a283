"""Render the report's blocks as Markdown; images are the PNG files beside report.md.

Every block holds plain text, much of it from run folders (variant names, commands, error
messages, paths), so all of it is escaped: it renders as the characters it holds, never as
emphasis, links, code, tables or raw HTML (`text`, `line_start`).
"""

from __future__ import annotations

import re

from degradation.report.document import Block, Bullets, Heading, Image, Paragraph, Table

# The ASCII punctuation that can start inline markup in CommonMark (emphasis, code spans,
# links; `<` only before what makes raw HTML or an autolink, `&` before an entity) and GitHub's
# extensions (tables, strikethrough, math), backslash-escaped as CommonMark 0.31 allows for
# any ASCII punctuation ("Backslash escapes"). "p < 0.001" stays as it is.
INLINE_MARKUP = re.compile(r"[\\`*\[\]|~$#]|<(?=[A-Za-z/!?])|&(?=[A-Za-z0-9#])")
# `_` emphasises only at a word's edge ("left/right-flanking" delimiter runs): max_steps stays.
EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# What makes a line a list item, quote, heading underline or numbered item.
BLOCK_MARKER = re.compile(r"^([-+=>]|\d{1,9}(?=[.)]))")


def text(value: object) -> str:
    """`value` as Markdown inline text: one line, every markup character escaped."""
    one_line = " ".join(str(value).splitlines())
    escaped = INLINE_MARKUP.sub(lambda found: "\\" + found.group(0), one_line)
    return EDGE_UNDERSCORE.sub(r"\\_", escaped)


def line_start(value: object) -> str:
    """`text(value)`, safe at the start of a line as well (no list, quote, heading, code)."""
    escaped = text(value).lstrip()  # four leading spaces would make a code block
    found = BLOCK_MARKER.match(escaped)
    if found is None:
        return escaped
    if found.group(1)[0].isdigit():  # "1. x": escape the dot
        end = found.end()
        return f"{escaped[:end]}\\{escaped[end:]}"
    return "\\" + escaped


def code_span(value: object, in_table: bool = False) -> str:
    """`value` as a one-line code span, fenced by more backticks than it holds (CommonMark
    "Code spans"); in a table `|` is escaped too (GitHub's tables split cells on it first)."""
    code = " ".join(str(value).splitlines())
    if in_table:
        code = code.replace("|", "\\|")
    fence = "`" * (max(map(len, re.findall(r"`+", code)), default=0) + 1)
    pad = " " if "`" in code else ""
    return f"{fence}{pad}{code}{pad}{fence}"


def code_block(lines: list[str], language: str = "") -> str:
    """A fenced code block, its fence longer than any backtick run inside."""
    body = "\n".join(lines)
    fence = "`" * max(3, max(map(len, re.findall(r"`+", body)), default=0) + 1)
    return f"{fence}{language}\n{body}\n{fence}"


def _cell(value: object) -> str:
    return text(value)


def render(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {line_start(block.text)}")
        elif isinstance(block, Paragraph):
            out.append(line_start(block.text))
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {line_start(item)}" for item in block.items))
        elif isinstance(block, Table):
            lines = []
            if block.caption:
                lines += [f"*{text(block.caption)}*", ""]
            lines.append("| " + " | ".join(_cell(c) for c in block.columns) + " |")
            lines.append("|" + "---|" * len(block.columns))
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
            if block.notes:
                lines += ["", *(f"{line_start(note)}  " for note in block.notes)]
            out.append("\n".join(lines).rstrip())
        elif isinstance(block, Image):
            alt = text(block.title)
            out.append(f"![{alt}]({block.path.name})\n\n*{text(block.caption)}*")
    return "\n\n".join(out) + "\n"
