"""codesearch: ask a repository a question in plain language, get the functions that answer."""

__version__ = "0.1.0"
