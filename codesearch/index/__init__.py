"""The index: a repository's chunks, vectors and BM25 postings on disk. It knows no model."""
