"""Natural order of names: digit runs compare by value, so ``chr2`` sorts before ``chr10`` and
``S2`` before ``S10``.

One key for every place that orders contigs or samples (pooled sites, the WASP summary's
samples), so that two outputs listing the same names list them in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_DIGITS = re.compile(r"(\d+)")


def natural_key(name) -> tuple:
    """Sort key that orders digit runs by value; ties broken by the name itself.

    Parameters
    ----------
    name : str
        Any name (other objects are compared by ``str(name)``).

    Returns
    -------
    tuple
        ``(parts, name)``: ``parts`` alternates text and integer, text first (``"chr10"`` →
        ``("chr", 10, "")``), so two keys always compare text with text and numbers with
        numbers; names whose digit runs have the same value (``S01``, ``S1``) order by the
        name, so the order never depends on the input order.

    Examples
    --------
    >>> sorted(["chr10", "chrX", "chr2", "S01", "S1"], key=natural_key)
    ['S01', 'S1', 'chr2', 'chr10', 'chrX']
    """
    text = str(name)
    parts = _DIGITS.split(text)
    # re.split with a group: even indices text (possibly ""), odd indices the digit runs
    return tuple(int(t) if i % 2 else t for i, t in enumerate(parts)), text


def natural_rank(names: Iterable) -> dict:
    """The rank of each distinct name in natural order (:func:`natural_key`).

    Parameters
    ----------
    names : iterable of str, shape (n,)
        Names, repeats allowed.

    Returns
    -------
    dict
        name → rank, ranks ``0 .. m-1`` over the ``m`` distinct names.
    """
    return {c: i for i, c in enumerate(sorted(set(names), key=natural_key))}
