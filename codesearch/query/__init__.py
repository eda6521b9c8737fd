"""Queries: the vocabulary of a question and its answers, retrieval, fusion and the engine."""
