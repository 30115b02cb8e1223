"""The package's version, in a module that imports nothing.

Why: the cache keys its entries by the code's version, and reading ``dpodoctor.__version__`` would import the package's
``__init__`` (api → sweep → cache): an import cycle. Everything that needs the version reads it from here.
"""

__version__ = "0.1.0"
