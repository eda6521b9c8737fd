"""Embedding: models, their prompts and runtimes, turning text into vectors."""
