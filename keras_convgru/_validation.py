"""Argument validation for the cells and layers.

The checks mirror `keras.layers`' own (`standardize_tuple`,
`standardize_padding`, ...) with public APIs only, and keep Keras's
wording where Keras has a message: every error names the argument and the
value received.
"""

import numbers

import keras

_PADDINGS = ("valid", "same")
_DATA_FORMATS = ("channels_last", "channels_first")
_NORMALIZATIONS = (None, "layer", "group")


def is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_rank(rank):
    if not is_int(rank):
        raise TypeError(
            f"Argument `rank` must be an integer. Received: rank={rank!r}"
        )
    if rank not in (1, 2, 3):
        raise ValueError(
            "Argument `rank` must be 1, 2 or 3 (the number of spatial "
            f"dimensions). Received: rank={rank}"
        )
    return int(rank)


def validate_positive_int(value, name):
    """A positive integer argument (`filters`, `links`, ...)."""
    if not is_int(value):
        raise TypeError(
            f"Argument `{name}` must be a positive integer. "
            f"Received: {name}={value!r}"
        )
    if value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a positive integer. "
            f"Received: {name}={value}"
        )
    return int(value)


def standardize_tuple(value, rank, name):
    """Turns an int or a sequence of ints into a tuple of `rank` ints >= 1."""
    if is_int(value):
        values = (int(value),) * rank
    elif isinstance(value, (list, tuple)):
        if len(value) != rank:
            raise ValueError(
                f"Argument `{name}` must be an integer or a tuple of {rank} "
                f"integers (one per spatial dimension). "
                f"Received: {name}={value!r}"
            )
        if not all(is_int(v) for v in value):
            raise TypeError(
                f"Argument `{name}` must contain only integers. "
                f"Received: {name}={value!r}"
            )
        values = tuple(int(v) for v in value)
    else:
        raise TypeError(
            f"Argument `{name}` must be an integer or a tuple of {rank} "
            f"integers. Received: {name}={value!r}"
        )
    if any(v < 1 for v in values):
        raise ValueError(
            f"Argument `{name}` must contain only positive integers. "
            f"Received: {name}={value!r}"
        )
    return values


def standardize_padding(padding):
    if not isinstance(padding, str) or padding.lower() not in _PADDINGS:
        raise ValueError(
            "Argument `padding` must be one of 'valid' or 'same'. "
            f"Received: padding={padding!r}"
        )
    return padding.lower()


def standardize_data_format(data_format):
    if data_format is None:
        return keras.config.image_data_format()
    if not isinstance(data_format, str) or (
        data_format.lower() not in _DATA_FORMATS
    ):
        raise ValueError(
            "Argument `data_format` must be one of 'channels_last' or "
            f"'channels_first'. Received: data_format={data_format!r}"
        )
    return data_format.lower()


def validate_rate(rate, name):
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool):
        raise TypeError(
            f"Argument `{name}` must be a float between 0 and 1. "
            f"Received: {name}={rate!r}"
        )
    if not 0.0 <= rate <= 1.0:
        raise ValueError(
            f"Argument `{name}` must be between 0 and 1. "
            f"Received: {name}={rate}"
        )
    return float(rate)


def validate_non_negative(value, name):
    """A float argument that is at least 0 (a loss weight)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(
            f"Argument `{name}` must be a non-negative float. "
            f"Received: {name}={value!r}"
        )
    if not value >= 0:
        raise ValueError(
            f"Argument `{name}` must be a non-negative float. "
            f"Received: {name}={value}"
        )
    return float(value)


def validate_normalization(normalization, norm_groups, norm_epsilon, filters):
    """`normalization`, `norm_groups` and `norm_epsilon`, checked."""
    if normalization not in _NORMALIZATIONS:
        raise ValueError(
            "Argument `normalization` must be one of None, 'layer' or "
            f"'group'. Received: normalization={normalization!r}"
        )
    if not is_int(norm_groups):
        raise TypeError(
            "Argument `norm_groups` must be a positive integer. "
            f"Received: norm_groups={norm_groups!r}"
        )
    if norm_groups <= 0:
        raise ValueError(
            "Argument `norm_groups` must be a positive integer. "
            f"Received: norm_groups={norm_groups}"
        )
    if normalization == "group" and filters % norm_groups:
        raise ValueError(
            "Argument `norm_groups` must divide `filters` (each gate's "
            "block of `filters` channels is split into `norm_groups` "
            f"groups). Received: norm_groups={norm_groups} and "
            f"filters={filters}"
        )
    if (
        not isinstance(norm_epsilon, numbers.Real)
        or isinstance(norm_epsilon, bool)
        or not norm_epsilon > 0
    ):
        raise ValueError(
            "Argument `norm_epsilon` must be a positive float. "
            f"Received: norm_epsilon={norm_epsilon!r}"
        )
    return normalization, int(norm_groups), float(norm_epsilon)


def validate_fuse_recurrence(fuse_recurrence):
    """`fuse_recurrence`: `True`, `False` or `"auto"` (as Keras's
    `use_cudnn`)."""
    if isinstance(fuse_recurrence, bool) or fuse_recurrence == "auto":
        return fuse_recurrence
    raise ValueError(
        "`fuse_recurrence` must be True, False or 'auto'. "
        f"Received: fuse_recurrence={fuse_recurrence!r}"
    )
