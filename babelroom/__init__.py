"""babelroom: live interpretation rooms. The core package imports no Azure or web framework."""

__version__ = "0.1.0"
