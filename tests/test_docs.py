"""The documentation: its code runs, and the site builds with every class.

Every ```python block of every page under docs/ runs, page by page: the
blocks of a page share one namespace and run in a temporary working
directory, and a block prints what its comments say it prints. A page that
needs one backend says so with a line
`<!-- docs-test: KERAS_BACKEND=tensorflow -->`; it then runs in a
subprocess with that backend, whatever backend the suite runs on.

The site is built once per session with `mkdocs build --strict` into a
temporary directory (6 to 30 s on 2 busy cores). Its API pages must show
every public class with a signature the class accepts as shown, each of its
constructor arguments, Keras's sections and the equations. The site must
also read as a reader meets it: no power such as 2**15 turned into bold or
italics, a search index that splits dotted names (`kc.ConvLSTM2D` is found
as `ConvLSTM2D`), a 404 page and a sitemap that work under the site's
sub-path, and tables narrow enough to show their last columns.
"""

import ast
import contextlib
import html
import inspect
import io
import json
import re
import sys
import textwrap
import urllib.parse
from pathlib import Path

import keras
import pytest
from helpers import Job
from helpers import python
from helpers import run

import keras_convgru as kc

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```", re.S | re.M)
BACKEND_MARK = re.compile(r"<!-- docs-test: KERAS_BACKEND=(\w+) -->")
# A line `<!-- docs-test: keras>=3.13 -->` right above a block: the block
# runs only where the installed Keras is at least that version (the
# oldest-versions run has Keras 3.8).
KERAS_MARK = re.compile(r"<!-- docs-test: keras>=(\d+)\.(\d+) -->\s*$")
KERAS_VERSION = tuple(int(p) for p in keras.version().split(".")[:2])
PUBLIC = [getattr(kc, name) for name in kc.__all__ if name != "__version__"]
API_PAGES = (
    "api/conv_gru.html",
    "api/conv_lstm.html",
    "api/conv_rnn.html",
    "api/traj_gru.html",
    "api/predrnn.html",
    "api/sa_conv_lstm.html",
    "api/models.html",
    "api/metrics.html",
)


def python_blocks(text):
    """`(line, code)` of each ```python block, `line` 0-based.

    Leaves out a block marked for a newer Keras than the installed one.
    """
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(2) == "python":
            above = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            needs = KERAS_MARK.search(above)
            if needs and KERAS_VERSION < tuple(map(int, needs.groups())):
                continue
            line = text.count("\n", 0, match.start(3))
            blocks.append((line, textwrap.dedent(match.group(3))))
    return blocks


def printed_comments(code):
    """What a block's comments say it prints.

    `print(x)  # shown` and comment lines right below a `print`; a
    trailing `...` marks the start of a longer line.
    """
    expected, after_print = [], False
    for line in code.splitlines():
        line = line.strip()
        match = re.match(r"print\(.*\)\s+# (.+)$", line)
        if match:
            expected.append(match.group(1))
            after_print = True
        elif line.startswith("print("):
            after_print = True
        elif after_print and line.startswith("# "):
            expected.append(line[2:])
        else:
            after_print = False
    return [shown.removesuffix("...").strip() for shown in expected]


def run_page(path):
    """Runs a page's Python blocks in order, in one namespace.

    Each block must print what its comments say it prints.
    """
    text = Path(path).read_text(encoding="utf-8")
    namespace = {"__name__": "__docs__"}
    for line, code in python_blocks(text):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            # Leading newlines: a traceback names the Markdown file's line.
            exec(compile("\n" * line + code, str(path), "exec"), namespace)
        sys.stdout.write(out.getvalue())
        printed = " ".join(out.getvalue().split())
        for shown in printed_comments(code):
            assert " ".join(shown.split()) in printed, (
                f"{path}:{line}: the block does not print {shown!r}; it "
                f"printed:\n{out.getvalue()}"
            )


def _pages():
    return sorted(
        p.relative_to(DOCS).as_posix()
        for p in DOCS.rglob("*.md")
        if "_ext" not in p.parts
    )


PAGES_WITH_CODE = [
    page
    for page in _pages()
    if python_blocks((DOCS / page).read_text(encoding="utf-8"))
]


def test_the_guides_have_python_examples_to_run():
    for page in (
        "index.md",
        "guides/cells.md",
        "guides/returns.md",
        "guides/saving.md",
        "guides/migrating.md",
    ):
        assert page in PAGES_WITH_CODE, f"{page} has no ```python block"


@pytest.mark.parametrize("page", _pages())
def test_python_code_blocks_are_marked_python(page):
    # A Python example fenced as `py` or `pycon` would never run here.
    text = (DOCS / page).read_text(encoding="utf-8")
    languages = {m.group(2) for m in FENCE.finditer(text)}
    assert not languages & {"py", "python3", "pycon", "pyi"}, languages


# Code (fenced blocks, `spans`) and HTML comments, which Markdown leaves
# alone: blanked out, newlines kept, so that a match's line is the page's.
NOT_PROSE = re.compile(
    r"^( *)```.*?^\1```|(`+).+?(?<!`)\2(?!`)|<!--.*?-->", re.S | re.M
)
# A star between two digits: `2**15` or `5*10` outside code is emphasis to
# Markdown (2**15 ... 2**17 renders as 2<strong>15 ... 2</strong>17).
STAR_IN_NUMBER = re.compile(r"\d+(?:\*+\d+)+")


def prose(text):
    """`text` with its code and comments blanked out, newlines kept."""
    return NOT_PROSE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def test_prose_blanks_code_and_keeps_powers():
    text = "a `2**15` b\n```python\nx = 2**15\n```\nc 2**17, 5*10**5 d\n"
    found = [m.group(0) for m in STAR_IN_NUMBER.finditer(prose(text))]
    assert found == ["2**17", "5*10**5"]
    assert prose(text).count("\n") == text.count("\n")


@pytest.mark.parametrize("page", _pages())
def test_no_power_is_written_as_markdown_emphasis(page):
    # Write 2<sup>15</sup> (or `2**15`, as code) in prose.
    text = prose((DOCS / page).read_text(encoding="utf-8"))
    found = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for m in STAR_IN_NUMBER.finditer(text)
    ]
    assert not found, f"{page}: stars between digits outside code: {found}"


# A 13-column and a 15-column table hid their last (verdict) columns at
# 1400 px: at that width the article is 885 px, which holds 9 columns of
# numbers and short headers (measured in Chromium with extra.css).
MAX_TABLE_COLUMNS = 9


@pytest.mark.parametrize("page", _pages())
def test_tables_are_narrow_enough_to_show_their_last_columns(page):
    text = prose((DOCS / page).read_text(encoding="utf-8")).splitlines()
    for i, line in enumerate(text[1:], 1):
        if re.match(r"^\|(\s*:?-{3,}:?\s*\|)+\s*$", line):
            columns = line.count("|") - 1
            assert columns <= MAX_TABLE_COLUMNS, (
                f"{page}:{i}: a table of {columns} columns; split it (the "
                f"page shows {MAX_TABLE_COLUMNS} at 1400 px)"
            )


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_page_python_blocks_run(page, tmp_path, monkeypatch):
    path = DOCS / page
    mark = BACKEND_MARK.search(path.read_text(encoding="utf-8"))
    needed = mark.group(1) if mark else None
    if needed is None or needed == keras.backend.backend():
        monkeypatch.chdir(tmp_path)
        run_page(path)
        return
    env = {"KERAS_BACKEND": needed, "TF_CPP_MIN_LOG_LEVEL": "2"}
    job = Job(
        page, python(__file__, path), env, cwd=tmp_path, separate_stderr=True
    )
    result = run(job, 600)
    assert result.code == 0, (
        f"{page} failed with KERAS_BACKEND={needed}:\n"
        f"{result.output[-3000:]}\n{result.errors[-5000:]}"
    )


# --------------------------------------------------------------------------
# The built site
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    command = python("-m", "mkdocs", "build", "--strict", "--site-dir", out)
    env = {"NO_MKDOCS_2_WARNING": "1"}
    job = Job("mkdocs", command, env, cwd=ROOT, separate_stderr=True)
    result = run(job, 600)
    assert result.code == 0, result.errors[-8000:]
    return out


def constructor_arguments(cls):
    """The named arguments of the constructor, as `inspect` reads them."""
    named = (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in named
    ]


def _class_section(site, cls):
    """The HTML of `cls`'s entry on its API page."""
    anchor = f'id="keras_convgru.{cls.__name__}"'
    for page in API_PAGES:
        text = (site / page).read_text(encoding="utf-8")
        start = text.find(anchor)
        if start >= 0:
            end = text.find('<h2 id="keras_convgru.', start + len(anchor))
            return text[start : end if end >= 0 else len(text)]
    raise AssertionError(f"{cls.__name__} is on no API page")


def _text(fragment):
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_site_has_every_page_of_the_nav(site):
    for page in (
        "index.html",
        "guides/cells.html",
        "guides/returns.html",
        "guides/saving.html",
        "guides/migrating.html",
        "guides/which_cell.html",
        "performance.html",
        "examples/index.html",
        "examples/nowcasting.html",
        *API_PAGES,
    ):
        assert (site / page).is_file(), page


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_api_page_shows_class_with_every_constructor_argument(site, cls):
    section = _class_section(site, cls)
    signature_text = _signature(site, cls)
    args = section[
        section.index(">Args:<") : section.index(">Call arguments:<")
    ]
    assert signature_text.startswith(cls.__name__ + "("), signature_text[:60]
    for name in constructor_arguments(cls):
        assert re.search(rf"\b{name}\b", signature_text), (
            f"{cls.__name__}'s signature lacks {name}"
        )
        assert f"<b><code>{name}</code></b>" in args, (
            f"{cls.__name__}'s Args lack {name}"
        )


def _signature(site, cls):
    section = _class_section(site, cls)
    signature = re.search(
        r'<div class="doc-signature[^"]*">(.*?)</pre>', section, re.S
    )
    assert signature, f"{cls.__name__} has no signature"
    return _text(signature.group(1))


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_api_signature_is_a_call_the_class_accepts(site, cls):
    # Call the class exactly as the page shows it: each positional
    # parameter by position, each keyword-only one by name, with the
    # defaults shown; it must build the same layer as the defaults do.
    text = _signature(site, cls)
    params = text[text.index("(") + 1 : text.rindex(")")]
    args = ast.parse(f"def f({params}): pass").body[0].args
    required = {"rank": 2, "filters": 4, "kernel_size": 3}
    if cls is kc.ConvRNN:
        required = {"cell": kc.ConvGRU2DCell(4, 3)}
    defaults = [None] * (len(args.args) - len(args.defaults)) + args.defaults
    positional = [
        required[a.arg] if d is None else ast.literal_eval(d)
        for a, d in zip(args.args, defaults)
    ]
    keywords = {
        a.arg: ast.literal_eval(d)
        for a, d in zip(args.kwonlyargs, args.kw_defaults)
    }
    assert args.kwarg is not None and args.kwarg.arg == "kwargs"
    shown = cls(*positional, **keywords).get_config()
    names = {a.arg for a in args.args}
    plain = cls(**{k: v for k, v in required.items() if k in names})
    plain = plain.get_config()
    shown.pop("name"), plain.pop("name")
    assert shown == plain


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_api_page_renders_keras_sections_and_the_example_as_code(site, cls):
    section = _class_section(site, cls)
    titles = re.findall(
        r'<span class="doc-section-title">([^<]*)</span>', section
    )
    assert titles == [
        "Args:",
        "Call arguments:",
        "Input shape:",
        "Output shape:",
        "Example:",
    ]
    # The doctest is highlighted code, not Markdown block quotes.
    assert "<blockquote>" not in section
    example = section[section.index(">Example:<") :]
    assert "&gt;&gt;&gt;" in example and "highlight" in example
    assert "<details" not in section  # no unknown section left as a box


def test_api_pages_show_the_equations(site):
    gru = _text(_class_section(site, kc.ConvGRU2D))
    for line in (
        "z  = σ(Wz * x + Uz * h + bz)",
        "r  = σ(Wr * x + Ur * h + br)",
        "reset_after=True : h̃ = tanh(Wh * x + bxh + r ⊙ (Uh * h + bhh))",
        "reset_after=False: h̃ = tanh(Wh * x + Uh * (r ⊙ h) + bh)",
        "h' = z ⊙ h + (1 − z) ⊙ h̃",
    ):
        assert line in gru
    lstm = _text(_class_section(site, kc.ConvLSTM2D))
    assert "c' = f ⊙ c + i ⊙ tanh(Wc * x + Uc * h + bc)" in lstm
    assert "h' = o ⊙ tanh(c')" in lstm


def test_site_reads_offline(site):
    # Scripts, styles and fonts are served from the site itself (a
    # `<link rel="canonical">` names the page's published address; nothing
    # loads it).
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        remote = re.findall(
            r'<(?:script|link)(?![^>]*rel="canonical")[^>]+(?:src|href)='
            r'"(https?:[^"]+)"',
            text,
        )
        assert not remote, f"{page.relative_to(site)} loads {remote}"


def test_site_shows_no_emphasis_inside_a_number(site):
    # What Markdown made of 2**15 ... 2**17: "2<strong>15 ... 2</strong>17".
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        text = re.sub(r"<(pre|code)\b.*?</\1>", "", text, flags=re.S)
        found = re.findall(r"\d</?(?:strong|em|b|i)>\d", text)
        assert not found, f"{page.relative_to(site)}: {found}"


def _search_index(site):
    return json.loads(
        (site / "search" / "search_index.json").read_text(encoding="utf-8")
    )


def search_tokens(separator, text):
    """The words Material's search makes of `text`, lower-cased.

    As its worker does: the text between HTML tags is split where the
    configured separator matches (which may match the empty string, at a
    lookahead), and the pieces become tokens.
    """
    pattern = re.compile(separator)
    tokens = set()
    for segment in re.split(r"<[^>]*>", text):
        start = 0
        for match in pattern.finditer(segment):
            if match.start() > start:
                tokens.add(segment[start : match.start()].lower())
            start = max(start, match.end())
        if start < len(segment):
            tokens.add(segment[start:].lower())
    return tokens


def test_search_splits_names_at_dots(site):
    separator = _search_index(site)["config"]["separator"]
    assert "convlstm2d" in search_tokens(separator, "kc.ConvLSTM2D")
    assert "convlstm2d" in search_tokens(
        separator, "<code>keras.layers.ConvLSTM2D</code>"
    )
    # A query is split as the pages are: each of its words is a word of
    # the text that names it in full.
    query = search_tokens(separator, "GroupNormalization")
    assert query and query <= search_tokens(
        separator, "`keras.layers.GroupNormalization`"
    )
    # Version numbers stay whole.
    assert "3.8.0" in search_tokens(separator, "Keras 3.8.0.")


def test_search_index_finds_dotted_names_on_their_pages(site):
    index = _search_index(site)
    separator = index["config"]["separator"]
    pages = {}
    for doc in index["docs"]:
        page = doc["location"].split("#")[0]
        words = search_tokens(separator, f"{doc['title']} {doc['text']}")
        pages.setdefault(page, set()).update(words)
    # Both write `kc.ConvLSTM2D` and never the bare name.
    for page in ("performance.html", "examples/index.html"):
        assert "convlstm2d" in pages[page], page
    group_norm = search_tokens(separator, "GroupNormalization")
    for page in ("api/conv_gru.html", "api/conv_lstm.html"):
        assert group_norm <= pages[page], page


def _site_url():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    return re.search(r"^site_url:\s*(\S+)", config, re.M).group(1)


def test_site_url_is_the_documentation_url_of_the_project():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    documentation = re.search(r'^Documentation = "([^"]+)"', pyproject, re.M)
    assert _site_url() == documentation.group(1)


def test_404_page_loads_its_assets_under_the_site_path(site):
    # GitHub Pages serves 404.html at whatever missing address was asked
    # for, under /keras-convgru/: links from the host's root break its
    # styles and scripts, relative ones break at any other depth.
    path = urllib.parse.urlsplit(_site_url()).path
    text = (site / "404.html").read_text(encoding="utf-8")
    links = re.findall(r'(?:href|src)="([^"#][^"]*)"', text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert local
    misplaced = [link for link in local if not link.startswith(path)]
    assert not misplaced, misplaced
    assert f'"{path}assets/stylesheets/' in text
    assert f'"{path}assets/javascripts/bundle.' in text


def test_sitemap_lists_every_page_under_the_site_url(site):
    sitemap = (site / "sitemap.xml").read_text(encoding="utf-8")
    listed = set(re.findall(r"<loc>([^<]+)</loc>", sitemap))
    pages = {
        _site_url() + page.relative_to(site).as_posix()
        for page in site.rglob("*.html")
        if page.name != "404.html"
    }
    assert listed == pages


if __name__ == "__main__":
    # `python tests/test_docs.py PAGE`: run one page (used for pages that
    # need a particular backend).
    run_page(sys.argv[1])
