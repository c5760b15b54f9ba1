"""The package's version, in a module of its own so that code anywhere in tinynas can read it
without importing the package root (which imports the search)."""

__version__ = "0.1.0"
