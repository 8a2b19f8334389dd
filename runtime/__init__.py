"""pdlt.runtime: the hand-written code every generated kernel module shares.

A generated module (``pdlt.generated.tanh``, or one written by ``pdlt generate --out DIR``) holds
only what was derived for its activation: sigma, sigma', the Gaussian integrands, the closed-form
expectations, the cumulants and the layer step, as numba functions with fixed signatures. Everything
else is here, written once, linted and tested:

- ``errors``: ``PdltError``, ``UserError`` and ``FlowError`` (raised by every module's ``flow``);
- ``numerics``: the numba side, quadrature rules, the expectations, the layer loops; it calls the
  module's derived callbacks (numba cfuncs) as first-class functions, so it compiles and caches once;
- ``api``: the Python side, input checks, ``flow``, ``two_input_flow`` and the ``Flow`` result;
- ``kernels``: N x N kernel matrices (NNGP and NTK) at infinite width, pair by pair in parallel.

A generated module imports numpy, numba and ``pdlt.runtime``; it runs wherever ``pdlt`` is installed.
``RUNTIME_ABI`` numbers the calling convention; a module records the one it was generated for.
This package imports nothing heavy on its own: ``import pdlt.runtime.errors`` stays cheap.
"""

# 2: the delta sector carries ddK[0] (four state entries, seven output columns);
# 3: modules provide sigma on a grid (VALUES) and the closed-form pair expectations (PAIR)
# 4: modules record their KINKS; 5: modules provide sigma' on a grid too (_dvalues); 6: sigma'', sigma''' too
# 7: RULE ends with a fallback flag (Gauss-Legendre for closed forms that cancel near a kink away from 0)
# 8: modules provide sigma and its first three derivatives on a grid in one pass (_jet)
RUNTIME_ABI = 8

MANY_MAX = 64  # the most inputs the four-index NTK tensors are computed for (three or more: ntk_many)
