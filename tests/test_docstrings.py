"""Every public class is documented in Keras's layout and its example runs."""

import doctest

import pytest

import keras_convgru as kc

PUBLIC = [getattr(kc, name) for name in kc.__all__ if name != "__version__"]
SECTIONS = ("Args:", "Call arguments:", "Input shape:", "Output shape:")


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_docstring_has_keras_sections_and_a_running_example(cls):
    doc = cls.__doc__
    for section in (*SECTIONS, "Example:"):
        assert section in doc, f"{cls.__name__} lacks {section}"
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(cls, cls.__name__, globs={})
    examples = sum(len(t.examples) for t in tests)
    assert examples > 0, f"{cls.__name__} has no runnable example"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{cls.__name__}: {result.failed} failed"


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_docstring_documents_every_constructor_argument(cls):
    import inspect

    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass.__module__.startswith("keras."):
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
    names.discard("self")
    if cls.__name__.endswith("D") or cls.__name__.endswith("DCell"):
        names.discard("rank")  # fixed by the class
    if hasattr(cls, "cell_class") and cls.cell_class is not None:
        from keras_convgru.conv_rnn import ConvRecurrentLayer

        names |= set(ConvRecurrentLayer._cell_argument_names.__func__(cls))
        names -= {"rank", "cell"}  # built by the layer from its arguments
    missing = [n for n in sorted(names) if f"        {n}:" not in cls.__doc__]
    assert not missing, f"{cls.__name__} does not document {missing}"


# The equations exactly as the public contract (API.md) writes them.
GRU_EQUATIONS = (
    "z  = σ(Wz * x + Uz * h + bz)",
    "r  = σ(Wr * x + Ur * h + br)",
    "reset_after=True : h̃ = tanh(Wh * x + bxh + r ⊙ (Uh * h + bhh))",
    "reset_after=False: h̃ = tanh(Wh * x + Uh * (r ⊙ h) + bh)",
    "h' = z ⊙ h + (1 − z) ⊙ h̃",
)
LSTM_EQUATIONS = (
    "i  = σ(Wi * x + Ui * h + bi)",
    "f  = σ(Wf * x + Uf * h + bf)",
    "c' = f ⊙ c + i ⊙ tanh(Wc * x + Uc * h + bc)",
    "o  = σ(Wo * x + Uo * h + bo)",
    "h' = o ⊙ tanh(c')",
)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_docstring_starts_with_a_summary_and_writes_out_the_math(cls):
    summary, blank = cls.__doc__.splitlines()[:2]
    assert summary.strip() and summary.endswith("."), summary
    assert blank.strip() == "", "no blank line after the summary"
    doc = " ".join(cls.__doc__.split())  # lines wrap anywhere in prose
    if cls.__name__.startswith("ConvGRU"):
        equations = GRU_EQUATIONS
        # reset_after is explained, not only listed.
        assert "reset_after=True` (the default" in doc
        assert "reset_after=False` it scales the state *before*" in doc
    elif cls.__name__.startswith("ConvLSTM"):
        equations = LSTM_EQUATIONS
    else:  # ConvRNN: the recurrence it runs
        equations = ("output_t, states_t = cell(x_t, states_(t-1))",)
    for line in equations:
        # The equation's lines as written, alignment spaces included.
        assert line in cls.__doc__, f"{cls.__name__} lacks {line!r}"
