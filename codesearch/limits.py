"""Bounds shared by the command line and the server; nothing imported, so either may load it at no cost."""

MAX_QUERY_CHARS = 10_000  # one query; longer text is not a question, and embedding it would stall the server
MAX_QUERIES_PER_REQUEST = 256  # one server request; the client sends a longer --queries-file in batches
