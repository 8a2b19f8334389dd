"""pdlt.derive: stage 1 of the pipeline, the symbolic side (sympy; mpmath for reference numbers).

The pipeline, stage by stage (docs/architecture.md has the long version):

1. **derive** (this package): an activation (``activations.get(name)`` or
   ``parse.parse_activation("z*tanh(log(1+exp(z)))")``) and an order p give a
   ``recursion.StepDerivation``: the layer-(l+1) cumulant coefficients c[m][k] of the stochastic
   metric as polynomials in layer l's, the width ratio, the hyperparameters and the Gaussian
   expectations mu_a^(i) = d^i/dK^i <sigma^(2a)>_K; ``expectations`` says how each expectation is
   computed (exact rule or quadrature); ``latex`` prints it all; ``evaluate`` evaluates it at 30
   digits; ``criticality`` (with ``taylor``, the data at z = 0, and ``susceptibilities``, g, chi_perp,
   chi_parallel) and ``finite_angle`` analyse an activation (book chapter 5); ``gauss`` is the one
   split mpmath Gaussian integrator behind every reference number. ``delta`` derives the two-input
   delta expansion (book 5.46-5.52), and ``sectors`` describes each family of recursions (fields,
   integrands and how each is evaluated, update stages) for codegen.
2. **codegen** (``pdlt.codegen``): lowers a derivation to plain data, prints it with a strict numba
   printer and renders Jinja templates into a module; the ``pdlt`` command line.
3. **generated** (``pdlt.generated``): the committed numba kernels; they import numpy, numba and
   ``pdlt.runtime``, the hand-written runtime that holds the algorithms.

Import the submodules you need, e.g. ``from pdlt.derive.recursion import derive_step``.
"""
