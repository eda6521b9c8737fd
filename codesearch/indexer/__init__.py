"""Indexing: building and refreshing an index from a repository, and the git hooks that do it."""
