"""Render the report's blocks as Markdown; images are the PNG files beside report.md."""

from __future__ import annotations

from degradation.report.document import Block, Bullets, Heading, Image, Paragraph, Table


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = []
            if block.caption:
                lines += [f"*{block.caption}*", ""]
            lines.append("| " + " | ".join(_cell(c) for c in block.columns) + " |")
            lines.append("|" + "---|" * len(block.columns))
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
            if block.notes:
                lines += ["", *(f"{note}  " for note in block.notes)]
            out.append("\n".join(lines).rstrip())
        elif isinstance(block, Image):
            out.append(f"![{_cell(block.title)}]({block.path.name})\n\n*{block.caption}*")
    return "\n\n".join(out) + "\n"
