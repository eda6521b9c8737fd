"""The errors a user can act on. The library raises them; each front end words them for its own users
(the CLI prints one line and exits 2, the MCP server returns a tool error, the socket server an error
line) and never lets library wording about flags reach an agent, or the reverse."""


class CodesearchError(Exception):
    """A problem the user can act on, said in one line."""


class IndexMissing(CodesearchError):
    """There is no index here yet, or one whose first build never finished: `codesearch index` makes it."""


class IndexBusy(CodesearchError):
    """Another codesearch run holds the index's writer lock."""


class IndexDamaged(CodesearchError):
    """The index's files are broken or name files outside the repository: `codesearch index --rebuild`."""


class BadRequest(CodesearchError):
    """A request with a bad field. `field` is the request's own name for it (k, mode, languages, ...);
    the message names it through "{name}", which each front end fills with what its users typed:
    `-k` and `--lang` on the command line, `k` and `lang` for an MCP agent."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(self.worded(field))

    def worded(self, name: str) -> str:
        return self.problem.replace("{name}", name)


def first_line(error: BaseException) -> str:
    """A library's exception in one line, for a CodesearchError that quotes it."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
