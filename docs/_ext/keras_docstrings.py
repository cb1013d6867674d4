"""Griffe extension: render keras_convgru's Keras-style docstrings.

mkdocstrings reads the docstrings with Griffe's Google parser, which cannot
see two things in them on its own:

1. The constructor signature. The rank-specific classes take `*args` and
   `**kwargs` and hand them on (to the rank-generic cell; a family layer to
   the cell it builds and to `ConvRNN`), so `inspect` sees
   `ConvGRU2D(*args, return_sequences=False, ..., **kwargs)`. Here the
   signature is followed through the constructors a call reaches, and the
   page shows what the class accepts, as keras.io does:
   `ConvGRU2D(filters, kernel_size, strides=1, ...)`. Griffe then checks
   the `Args:` section against it (a documented argument the constructor
   does not take is a warning, so `mkdocs build --strict` fails).
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
import keras

PACKAGE = "keras_convgru"

_EXAMPLE_TITLE = re.compile(r"^(Examples?):\s*$")
_ITEM = re.compile(r"^(\*{0,2}\w+):\s*(.*)$")
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_KINDS = {
    inspect.Parameter.POSITIONAL_OR_KEYWORD: (
        griffe.ParameterKind.positional_or_keyword
    ),
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


# --------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------


def _own_inits(cls):
    """The package's `__init__`s that `cls(...)` runs, outermost first."""
    return [
        klass.__dict__["__init__"]
        for klass in cls.__mro__
        if "__init__" in klass.__dict__ and klass.__module__.startswith(PACKAGE)
    ]


def _call_chain(cls):
    """`(init, group)` for each constructor that receives `cls`'s arguments.

    A family layer (a class with a `cell_class`) passes its positional and
    cell arguments to the cell it builds and the rest to `ConvRNN`; the
    cell's arguments are listed first (group 0), as in the docstrings.
    """
    inits = _own_inits(cls)
    cell_class = getattr(cls, "cell_class", None)
    if cell_class is None:
        return [(init, 0) for init in inits]
    cell_chain = [(init, 0) for init, _ in _call_chain(cell_class)]
    return [(inits[0], 1)] + cell_chain + [(init, 1) for init in inits[1:]]


def constructor_parameters(cls):
    """The `inspect.Parameter`s that `cls(...)` accepts, in display order.

    Positional parameters stay positional while every constructor before
    them forwards `*args`; the others are keyword-only. `rank` is left out
    where the class fixes it, `cell` where the class builds its own.
    """
    supplied = set()
    if "rank" not in inspect.signature(_own_inits(cls)[0]).parameters:
        supplied.add("rank")
    if getattr(cls, "cell_class", None) is not None:
        supplied.add("cell")

    positional, keyword, seen = [], [], set()
    forwards_args = True
    for init, group in _call_chain(cls):
        params = list(inspect.signature(init).parameters.values())[1:]
        for p in params:
            if p.kind in _VARIADIC or p.name in supplied | seen:
                continue
            seen.add(p.name)
            if p.kind is p.POSITIONAL_OR_KEYWORD and forwards_args:
                positional.append(p)
            else:
                keyword.append((group, p.replace(kind=p.KEYWORD_ONLY)))
        forwards_args = forwards_args and any(
            p.kind is p.VAR_POSITIONAL for p in params
        )
    keyword = [p for _, p in sorted(keyword, key=lambda item: item[0])]
    if getattr(cls, "cell_class", None) is not None:
        # keras.layers.Layer's own argument, which the family layers
        # document among theirs (keras.layers.ConvLSTM2D names it, too).
        layer_init = inspect.signature(keras.layers.Layer.__init__)
        regularizer = layer_init.parameters["activity_regularizer"]
        keyword.insert(
            _index_after_cell_arguments(cls, keyword),
            regularizer.replace(kind=regularizer.KEYWORD_ONLY),
        )
    kwargs = inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)
    return positional + keyword + [kwargs]


def _index_after_cell_arguments(cls, keyword):
    cell_names = {
        p.name
        for init, _ in _call_chain(cls.cell_class)
        for p in inspect.signature(init).parameters.values()
    }
    return sum(1 for p in keyword if p.name in cell_names)


def _griffe_parameters(parameters):
    return griffe.Parameters(
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
    )


def _set_signature(cls, runtime_class):
    init = griffe.Function(
        "__init__",
        parameters=_griffe_parameters(constructor_parameters(runtime_class)),
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
