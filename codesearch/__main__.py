import sys

# `python -m codesearch` puts the working directory first on sys.path, so inside an indexed repository
# its files (a queue.py, a json.py) would shadow the standard library, and run. Nothing is imported from
# there: the package itself is already loaded. (`python -P` and PYTHONSAFEPATH add nothing to remove.)
if not sys.flags.safe_path and sys.path:
    sys.path.pop(0)

from codesearch.cli.main import main  # noqa: E402

main()
