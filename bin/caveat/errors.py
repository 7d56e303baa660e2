"""User-facing errors: every bad input names the file, the record and the fix."""

from __future__ import annotations

import errno
import signal


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


#: errno values that mean "this disk or folder cannot take the output", not a bug.
STORAGE_ERRNOS = {errno.ENOSPC: "free space on that disk (or put the outdir on a larger one), then rerun",
                  errno.EDQUOT: "free space within your disk quota (or put the outdir elsewhere), then rerun",
                  errno.EFBIG: "raise the file size limit (`ulimit -f`) or put the outdir on a filesystem "
                               "that allows larger files, then rerun",
                  errno.EROFS: "give an outdir on a writable filesystem",
                  errno.EACCES: "make the folder writable for you, or give another outdir",
                  errno.EPERM: "make the folder writable for you, or give another outdir"}


def storage_error(e: OSError, where, context: str = "") -> InputError | None:
    """The user-facing error for a failed write (full disk, quota, file size limit,
    read-only or forbidden folder), or ``None`` when ``e`` is another kind of OSError.

    ``where`` names the output (folder) when the OSError carries no file name (a failed
    ``write()`` does not)."""
    fix = STORAGE_ERRNOS.get(e.errno)
    if fix is None:
        return None
    what = f"{context}: " if context else ""
    return InputError(e.filename or where, f"{what}cannot write ({e.strerror})", fix)


def killed_writing(returncode: int, stderr: str) -> str | None:
    """Why an external tool failed when the cause was storage (killed by SIGXFSZ, or it
    said so on stderr); ``None`` otherwise."""
    if returncode == -signal.SIGXFSZ:
        return "killed on reaching the file size limit (SIGXFSZ)"
    for words in ("No space left on device", "Disk quota exceeded", "File too large", "Read-only file system"):
        if words in stderr:
            return words
    return None
