"""docs/configuration.md, generated from the pydantic config classes: every key with its type, default, bounds
and the comment that documents it in the source, so that the reference cannot drift from the code.

    python -m resmm.config_reference > docs/configuration.md      (`make docs` does this)
"""
from __future__ import annotations

import inspect
import io
import json
import textwrap
import tokenize
from typing import Annotated, Literal, Union, get_args, get_origin
import types

from pydantic import BaseModel

from resmm.config import Config

INTRO = """# Configuration reference

Generated from `resmm/config.py` by `python -m resmm.config_reference`; a test fails when this page and the code
disagree. Set a key in a YAML file (`--config`, sections as below) or on the command line as a dotted
`key=value` override, e.g. `resmm train data.path=s3://bucket/shards/ train.num_workers=4`. Values parse as YAML,
so `train.epochs=4`, `data.classes=[cat, dog]` and `data.label_selector={resmm.io/role: data}` all work. Unknown
keys are refused with the list of allowed ones.
"""


def field_comments(cls: type) -> dict[str, str]:
    """{field: its comment}: the comment lines right above the field, then the one on its own line."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    above: list[str] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for index, token in enumerate(tokens):
        if token.type == tokenize.COMMENT and token.start[1] == 4 and token.line.strip().startswith("#"):
            above.append(token.string.lstrip("# ").strip())
        elif token.type == tokenize.NAME and token.start[1] == 4 and index + 1 < len(tokens) \
                and tokens[index + 1].string == ":":
            trailing = [t.string.lstrip("# ").strip() for t in tokens[index:]
                        if t.type == tokenize.COMMENT and t.start[0] == token.start[0]]
            comments[token.string] = " ".join(above + trailing)
            above = []
        elif token.type == tokenize.NEWLINE and not token.line.strip().startswith("#"):
            continue
        elif token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            if token.start[1] <= 4 and token.type == tokenize.NAME:
                above = []
    return comments


def type_name(annotation) -> str:
    """A short, readable type: `int or "auto"`, `"on" / "off"`, `str or null`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if origin is Literal:
        return " / ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if annotation is type(None):
        return "null"
    if origin is not None:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", str(annotation))


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def default_text(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return ""
    else:
        value = field.default
    return "`null`" if value is None else f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def bounds(field) -> str:
    parts = []
    for item in field.metadata:
        for name, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "length ≥")):
            if getattr(item, name, None) is not None:
                parts.append(f"{symbol} {getattr(item, name)}")
    return ", ".join(parts)


def rows(model: type[BaseModel], prefix: str) -> list[str]:
    lines, comments = [], {}
    for cls in reversed(model.__mro__):  # fields declared on a base class carry their comments there
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            comments.update(field_comments(cls))
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if nested is not None:
            lines += rows(nested, f"{prefix}{name}.")
            continue
        note = comments.get(name, "") or (field.description or "")
        limits = bounds(field)
        meaning = f"{limits}; {note}" if limits and note else limits or note
        lines.append(f"| `{prefix}{name}` | {cell(type_name(annotation))} | {cell(default_text(field))} | "
                     f"{cell(meaning)} |")
    return lines


def reference_markdown() -> str:
    out = [INTRO]
    for section, field in Config.model_fields.items():
        out += [f"## `{section}`", "", "| key | type | default | meaning |", "|---|---|---|---|",
                *rows(field.annotation, f"{section}."), ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(reference_markdown(), end="")
