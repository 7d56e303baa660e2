"""User-facing errors: every bad input names the file, the record and the fix."""

from __future__ import annotations


class CaveatError(Exception):
    """Base class for errors that are the user's to fix (no traceback shown by the CLI)."""


class InputError(CaveatError):
    """A bad input file or parameter.

    Parameters
    ----------
    file : str or Path or None
        The offending file (or parameter name).
    problem : str
        What is wrong, naming the record (line, contig, sample) where possible.
    fix : str
        What the user should do about it.
    """

    def __init__(self, file, problem: str, fix: str = ""):
        self.file = None if file is None else str(file)
        self.problem = problem
        self.fix = fix
        where = f"{self.file}: " if self.file else ""
        msg = f"{where}{problem}"
        if fix:
            msg += f"\n  fix: {fix}"
        super().__init__(msg)

    def __reduce__(self):
        # picklable, so errors raised in worker processes reach the user intact
        return (type(self), (self.file, self.problem, self.fix))
