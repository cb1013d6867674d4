"""Griffe extension: render keras_convgru's Keras-style docstrings.

mkdocstrings reads the docstrings with Griffe's Google parser, which cannot
see two things in them on its own:

1. The constructor signature of a class that inherits its `__init__` (the
   1D/2D/3D classes inherit their family's, which writes every argument
   out): under `force_inspection` Griffe shows no parameters for it. The
   page shows `inspect.signature(cls)`, what `help()` shows too, and
   Griffe then checks the `Args:` section against it (a documented
   argument the constructor does not take is a warning, so
   `mkdocs build --strict` fails).
2. Keras's sections. `Call arguments:`, `Input shape:` and `Output shape:`
   are not Google section titles (Griffe would render them as admonition
   boxes, the list of call arguments as one paragraph), and an `Example:`
   followed by doctest lines at the docstring's own indentation is plain
   text to Griffe (Markdown would render `>>>` as nested block quotes).
   They become a parameter list, titled text and highlighted `pycon` code.
"""

import inspect
import re

import griffe

PACKAGE = "keras_convgru"

_EXAMPLE_TITLE = re.compile(r"^(Examples?):\s*$")
_ITEM = re.compile(r"^(\*{0,2}\w+):\s*(.*)$")
_KINDS = {
    inspect.Parameter.POSITIONAL_OR_KEYWORD: (
        griffe.ParameterKind.positional_or_keyword
    ),
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _set_signature(cls, runtime_class):
    parameters = inspect.signature(runtime_class).parameters.values()
    init = griffe.Function(
        "__init__",
        parameters=griffe.Parameters(
            griffe.Parameter(
                "self", kind=griffe.ParameterKind.positional_or_keyword
            ),
            *[
                griffe.Parameter(
                    p.name,
                    kind=_KINDS[p.kind],
                    default=None if p.default is p.empty else repr(p.default),
                )
                for p in parameters
            ],
        ),
    )
    cls.set_member("__init__", init)


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


def _items(text):
    """`name: description` items with indented continuation lines."""
    items = []
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match and not line[:1].isspace():
            items.append([match.group(1), [match.group(2)]])
        elif items:
            items[-1][1].append(line.strip())
        else:
            raise ValueError(f"Not a `name: description` item: {line!r}")
    return [
        griffe.DocstringParameter(name, description="\n".join(lines).strip())
        for name, lines in items
    ]


def _titled_text(title, text):
    return griffe.DocstringSectionText(
        f'<p><span class="doc-section-title">{title}:</span></p>\n\n{text}'
    )


def _split_examples(text):
    """Text before an `Example:` title, and the example section (or None)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = _EXAMPLE_TITLE.match(line)
        rest = [x for x in lines[i + 1 :] if x.strip()]
        if match and rest and rest[0].startswith(">>>"):
            return "\n".join(lines[:i]).rstrip(), _examples(
                match.group(1), lines[i + 1 :]
            )
    return text, None


def _examples(title, lines):
    """Doctest runs as `pycon` code, the lines between them as text."""
    parts, current, in_code = [], [], False

    def flush(kind):
        if any(x.strip() for x in current):
            parts.append((kind, "\n".join(current).strip("\n")))
        current.clear()

    for line in lines:
        if not line.strip():
            if in_code:
                flush(griffe.DocstringSectionKind.examples)
                in_code = False
            else:
                current.append(line)
        elif line.startswith(">>>") and not in_code:
            flush(griffe.DocstringSectionKind.text)
            in_code = True
            current.append(line)
        else:
            current.append(line)
    flush(
        griffe.DocstringSectionKind.examples
        if in_code
        else griffe.DocstringSectionKind.text
    )
    return griffe.DocstringSectionExamples(parts, title=f"{title}:")


def keras_sections(sections):
    """Griffe's Google sections, with Keras's sections made readable."""
    result = []
    for section in sections:
        kind = section.kind
        if kind is griffe.DocstringSectionKind.admonition:
            title = section.title
            contents = section.value.contents
            if title == "Call arguments":
                result.append(
                    griffe.DocstringSectionParameters(
                        _items(contents), title="Call arguments:"
                    )
                )
            elif title in ("Input shape", "Output shape"):
                result.append(_titled_text(title, contents))
            else:
                result.append(section)
        elif kind is griffe.DocstringSectionKind.parameters:
            # Keras calls them `Args:`, as the docstrings do.
            section.title = section.title or "Args:"
            result.append(section)
        elif kind is griffe.DocstringSectionKind.text:
            text, examples = _split_examples(section.value)
            if text.strip():
                result.append(griffe.DocstringSectionText(text))
            if examples is not None:
                result.append(examples)
        else:
            result.append(section)
    return result


class KerasDocstrings(griffe.Extension):
    """Full signatures and Keras's docstring sections for keras_convgru."""

    def on_class(self, *, cls, loader, **kwargs):
        if not cls.path.startswith(PACKAGE + ".") or not cls.docstring:
            return
        runtime_class = griffe.dynamic_import(cls.path)
        public = griffe.dynamic_import(PACKAGE).__all__
        if runtime_class.__name__ not in public:
            return
        _set_signature(cls, runtime_class)
        # `parsed` is computed once and cached: what the templates render.
        sections = cls.docstring.parsed
        sections[:] = keras_sections(sections)
