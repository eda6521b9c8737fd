"""Source: a repository's files found and cut into functions."""
