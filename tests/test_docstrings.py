"""Every public class is documented in Keras's layout and its example runs."""

import doctest
import inspect

import pytest

import keras_convgru as kc

PUBLIC = [getattr(kc, name) for name in kc.__all__ if name != "__version__"]
# The models of `kc.models` (the schedules have no call, so no shapes).
MODELS = [kc.models.EncoderForecaster, kc.models.NextFrameForecaster]
SECTIONS = ("Args:", "Call arguments:", "Input shape:", "Output shape:")


@pytest.mark.parametrize("cls", PUBLIC + MODELS, ids=lambda c: c.__name__)
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
def test_signature_lists_the_arguments_by_name(cls):
    # What `inspect`, `help()` and IDEs show: no `*args` standing in for
    # the arguments, and a layer's cell arguments among its own.
    parameters = inspect.signature(cls).parameters.values()
    assert not [p for p in parameters if p.kind == p.VAR_POSITIONAL]
    names = [p.name for p in parameters]
    if cls is not kc.ConvRNN:
        assert names[:2] in (["filters", "kernel_size"], ["rank", "filters"])
        assert "dropout" in names and "seed" in names


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_docstring_documents_every_constructor_argument(cls):
    named = (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    names = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in named
    ]
    missing = [n for n in names if f"        {n}:" not in cls.__doc__]
    assert not missing, f"{cls.__name__} does not document {missing}"


FAMILY_LAYERS = [c for c in PUBLIC if getattr(c, "cell_class", None)]


@pytest.mark.parametrize("cls", FAMILY_LAYERS, ids=lambda c: c.__name__)
def test_layer_reads_every_cell_argument(cls):
    # `layer.filters`, `layer.reset_after`, ...: the cell's values.
    layer = cls(3, 2, seed=4)
    for name in inspect.signature(cls.cell_class).parameters:
        if name != "kwargs":
            assert getattr(layer, name) == getattr(layer.cell, name), name


# The equations exactly as the public contract writes them (the API
# reference pages, docs/api/conv_gru.md and conv_lstm.md, show these
# docstrings).
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


TRAJ_GRU_EQUATIONS = (
    "f      = flow_activation(Fx * x + Fh * h + bf)",
    "flows  = Ff * f + bff",
    "(Δy_l, Δx_l) = flows channels (2l, 2l + 1),  l = 0 .. links - 1",
    "hh     = U * concat(h_0, ..., h_{L-1}) + bh",
    "xh     = W * x + bx",
    "z = σ(xh_z + hh_z),  r = σ(xh_r + hh_r),  h̃ = tanh(xh_h + r ⊙ hh_h)",
    "h' = z ⊙ h + (1 − z) ⊙ h̃",
)


# The memory cells' equations as ../shared/API.md writes them.
MEMORY_EQUATIONS_OF = {
    "SpatioTemporalLSTM2D": (
        "[i_x, f_x, g_x, i'_x, f'_x, g'_x, o_x] = W * x + b",
        "c' = f ⊙ c + i ⊙ g",
        "m' = f' ⊙ m + i' ⊙ g'",
        "o  = σ(o_x + o_h + Wo * [c' ; m'])",
        "h' = o ⊙ tanh(W1 * [c' ; m'])",
    ),
    "CausalLSTM2D": (
        "[i_c', g_c', f_c', o_c'] = Wcm * c'",
        "m' = f' ⊙ tanh(m_m) + i' ⊙ g'",
        "o  = tanh(o_x + o_h + o_c' + Wom * m')",
        "h' = o ⊙ tanh(W1 * [c' ; m'])",
    ),
    "GradientHighwayUnit2D": (
        "p = tanh(p_x + p_z),  u = σ(u_x + u_z)",
        "z' = u ⊙ p + (1 − u) ⊙ z",
    ),
    "SAConvLSTM2D": (
        "Z = Wz * [Z_h ; Z_m] + bz",
        "m' = (1 − σ(a_i)) ⊙ m + σ(a_i) ⊙ tanh(a_g)",
        "h' = σ(a_o) ⊙ m'",
    ),
}


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
    elif cls.__name__.startswith("TrajGRU"):
        equations = TRAJ_GRU_EQUATIONS
    elif cls.__name__.removesuffix("Cell") in MEMORY_EQUATIONS_OF:
        equations = MEMORY_EQUATIONS_OF[cls.__name__.removesuffix("Cell")]
    else:  # ConvRNN: the recurrence it runs
        equations = ("output_t, states_t = cell(x_t, states_(t-1))",)
    for line in equations:
        # The equation's lines as written, alignment spaces included.
        assert line in cls.__doc__, f"{cls.__name__} lacks {line!r}"
