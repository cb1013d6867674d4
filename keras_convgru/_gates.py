"""The gate math of each family, written once.

The cells' `recurrent_step` and the fused recurrence's forward pass
(`keras_convgru._fused`, whose backward pass differentiates these
equations by hand) both call these functions; the inputs are the gates'
pre-activation blocks, already convolved and split. `σ` is
`recurrent_activation`, `tanh` is `activation`.
"""


def gru_blend(z, h_tilde, h_tm1):
    """`h' = z ⊙ h + (1 − z) ⊙ h̃`, in one operation less."""
    return h_tilde + z * (h_tm1 - h_tilde)


def gru_update_reset(x_z, x_r, h_z, h_r, recurrent_activation):
    """The update and reset gates: `z = σ(x_z + h_z)`, `r = σ(x_r + h_r)`."""
    return recurrent_activation(x_z + h_z), recurrent_activation(x_r + h_r)


def gru_reset_after(x_gates, h_gates, h_tm1, activation, recurrent_activation):
    """A GRU step with the reset gate after the state's convolution.

    ```
    z  = σ(x_z + h_z)
    r  = σ(x_r + h_r)
    h̃  = tanh(x_h + r ⊙ h_h)
    h' = z ⊙ h + (1 − z) ⊙ h̃
    ```

    Args:
        x_gates: `(x_z, x_r, x_h)`, the input projection's blocks (with
            the input bias).
        h_gates: `(h_z, h_r, h_h)`, the state's convolution's blocks (with
            the recurrent bias).
        h_tm1: the state before the step.

    Returns:
        `(h', z, r, h̃)`.
    """
    x_z, x_r, x_h = x_gates
    h_z, h_r, h_h = h_gates
    z, r = gru_update_reset(x_z, x_r, h_z, h_r, recurrent_activation)
    h_tilde = activation(x_h + r * h_h)
    return gru_blend(z, h_tilde, h_tm1), z, r, h_tilde


def lstm(
    gates,
    c_tm1,
    activation,
    recurrent_activation,
    peepholes=None,
    normalize_cell=None,
):
    """An LSTM step from the summed pre-activations of its gates.

    ```
    i  = σ(x_i + wci ⊙ c)
    f  = σ(x_f + wcf ⊙ c)
    c' = f ⊙ c + i ⊙ tanh(x_c)
    o  = σ(x_o + wco ⊙ c')
    h' = o ⊙ tanh(N(c'))
    ```

    Args:
        gates: `(x_i, x_f, x_c, x_o)`, each the sum of the input and the
            state's projections (with the bias).
        c_tm1: the cell state before the step.
        peepholes: `None` or `(wci, wcf, wco)` broadcastable to `c`.
        normalize_cell: `None` or the normalization `N` of `c'` (the
            carried state stays unnormalized, Ba et al. 2016).

    Returns:
        `(h', c', (i, f, g, o))`, `g = tanh(x_c)`.
    """
    x_i, x_f, x_c, x_o = gates
    if peepholes is not None:
        # i and f look at the old cell state, o at the new one.
        w_ci, w_cf, w_co = peepholes
        x_i = x_i + w_ci * c_tm1
        x_f = x_f + w_cf * c_tm1
    i = recurrent_activation(x_i)
    f = recurrent_activation(x_f)
    g = activation(x_c)
    c = f * c_tm1 + i * g
    if peepholes is not None:
        x_o = x_o + w_co * c
    o = recurrent_activation(x_o)
    normalized = c if normalize_cell is None else normalize_cell(c)
    h = o * activation(normalized)
    return h, c, (i, f, g, o)
