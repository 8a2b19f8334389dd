"""The errors pdlt raises on purpose: one base, with user errors told apart from internal ones.

``PdltError`` is the base of every error pdlt raises deliberately. ``UserError`` (also a
``ValueError``, so ``except ValueError`` keeps working) means the input was wrong or cannot be
handled: the command line prints its message as one line and exits with status 2. ``FlowError`` is
the user error of the generated kernels (bad arguments, an expectation that diverges or cannot be
resolved). Anything else that escapes is a bug in pdlt: the command line says so, prints the
traceback and exits with 1.
"""

from __future__ import annotations


class PdltError(Exception):
    """Base of the errors pdlt raises deliberately."""


class UserError(PdltError, ValueError):
    """Bad or unsupported input, reported to the user as one line."""


class FlowError(UserError):
    """Bad input to a kernel module's flow, or an expectation that diverges or cannot be resolved."""
