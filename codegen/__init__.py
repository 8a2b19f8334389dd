"""pdlt.codegen: stage 2 of the pipeline, from derivations to numba kernels.

``lower.lower(activation, order)`` crosses the symbolic boundary once: it lowers the activation's
sectors (``pdlt.derive.sectors``) into a ``ModuleIR`` (``ir``) of strings and numbers;
``render.render_module`` fills ``templates/module.py.jinja``, which only lays the file out;
``write.write_atomic`` writes it (temporary file, then ``os.replace``). ``generate`` regenerates and
checks ``generated/`` (``python -m pdlt.codegen [--check]``), ``usercache.kernels`` generates kernels
for any activation and order on first use, ``cli`` is the ``pdlt`` command, ``analysis`` and
``plots`` put the kernels to work (nu, exponents, the aspect ratio, figures), ``bench`` measures them.
See docs/architecture.md.
"""
