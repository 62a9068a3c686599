"""Hypothesis strategies more than one test module draws from."""

from __future__ import annotations

from hypothesis import strategies as st


def values(scalars: st.SearchStrategy, keys: st.SearchStrategy, *, size: int, leaves: int) -> st.SearchStrategy:
    """JSON-like values: a scalar, or lists and objects (keys from `keys`) of values.
    Bare scalars are drawn as often as containers: st.recursive alone draws a top-level
    scalar about once in a hundred, so a bool taken for an int, or 1e400 pushed on its
    own, would seldom be tried."""
    return scalars | st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=size) | st.dictionaries(keys, inner, max_size=size),
        max_leaves=leaves,
    )
