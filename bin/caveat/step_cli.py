"""A step's params as command-line options, and back: one rule for every entry script.

The option for param ``key`` is ``--`` + ``key`` with ``_`` → ``-`` (``match_bins`` →
``--match-bins``), its ``dest`` is ``key`` and its default the step's declared default, so
``conf/modules.config`` passes ``--match-bins ${params.match_bins}`` and the entry script
reads the same value the local engine would. The option's type follows the default:

- ``bool`` → ``--key`` / ``--no-key`` (``argparse.BooleanOptionalAction``);
- ``list`` / ``tuple`` → ``nargs='+'``, element type from the default's first element;
- ``int`` / ``float`` / ``str`` → that type, with the choices of its ``enum`` in
  :data:`caveat.params.RULES` (or ``choices[key]``); ``None`` → ``types[key]`` (default ``str``;
  ``list`` for a list param whose default is ``None``: ``nargs='+'`` of ``str``).

Older spellings stay accepted as aliases (``aliases={"match_bins": ["--bins"]}``); the
canonical flag is the first option string, the one ``modules.config`` uses.
:func:`params_from_args` turns the parsed namespace back into the params dict.
tests/test_nextflow_params_parity.py checks every step's params reach its parser and its
Nextflow process this way.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any, Mapping, Sequence

from .params import RULES


def flag(key: str) -> str:
    """The option string of param ``key``: ``--`` + key with ``_`` → ``-``."""
    return "--" + key.replace("_", "-")


def add_param_options(ap: argparse.ArgumentParser | argparse._ArgumentGroup, params: Mapping[str, Any], *,
                      aliases: Mapping[str, Sequence[str]] | None = None,
                      types: Mapping[str, type] | None = None,
                      choices: Mapping[str, Sequence] | None = None,
                      helps: Mapping[str, str] | None = None) -> None:
    """Add one option per param of ``params`` (see the module docstring for the rule)."""
    aliases, types, choices, helps = aliases or {}, types or {}, choices or {}, helps or {}
    for key, default in params.items():
        opts = [flag(key), *aliases.get(key, ())]
        kw: dict[str, Any] = {"dest": key, "default": copy.deepcopy(default)}
        if key in helps:
            kw["help"] = helps[key]
        if isinstance(default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            if isinstance(default, (list, tuple)) or types.get(key) is list:
                kw["nargs"] = "+"
                kw["default"] = None if default is None else list(default)
                kw["type"] = type(default[0]) if default else str
                if types.get(key) not in (None, list):
                    kw["type"] = types[key]
            else:
                kw["type"] = types.get(key, str if default is None else type(default))
            enum = choices.get(key) or RULES.get(key, {}).get("enum")
            if enum:
                kw["choices"] = tuple(enum)
        ap.add_argument(*opts, **kw)


def params_from_args(args: argparse.Namespace, params: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
    """The params dict (keys of ``params``) from a namespace parsed with :func:`add_param_options`."""
    out = {}
    for key in params:
        v = getattr(args, key)
        out[key] = list(v) if isinstance(v, (list, tuple)) else v  # a copy: argparse hands out its default
    return out


__all__ = ["add_param_options", "flag", "params_from_args"]
