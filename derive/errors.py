"""The errors pdlt raises on purpose (defined in ``pdlt.runtime.errors``, shared by every stage).

``PdltError`` is the base; ``UserError`` (a ``ValueError``) is bad or unsupported input, one line
and exit status 2 on the command line; anything else that escapes is a bug in pdlt.
"""

from __future__ import annotations

from pdlt.runtime.errors import FlowError, PdltError, UserError

__all__ = ["FlowError", "PdltError", "UserError"]
