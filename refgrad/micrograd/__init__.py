"""The drop-in micrograd surface: ``refgrad.micrograd.engine.Value`` and ``refgrad.micrograd.nn``.

Built on refgrad's op registry, so every forward and derivative here is the one
the core engine uses and the oracle checks.
"""

# The API lives in the submodules, as in micrograd: refgrad.micrograd.engine and refgrad.micrograd.nn.
__all__: list[str] = []
