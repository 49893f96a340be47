"""Exceptions raised by aihub_nb.

Every message says what went wrong and what to do next, on one line. An error a user can fix
(`user_facing = True`: a usage error, a provider refusing or down, a bad tool or tool call, an
agent out of rounds) is shown in a notebook as that one line; a store or schema error is a bug or
corrupt data and keeps its traceback.

    AihubError
    ├── StoreError                   (a bug or corrupt data: keeps its traceback)
    │   ├── UnknownTableError        a table name that schema.prisma does not declare
    │   │                            (UnknownModelError is the same class, its older name)
    │   ├── UnknownFieldError        a field name that the table does not have
    │   └── RecordNotFoundError      no row with that id
    ├── SchemaError                  schema.prisma could not be read (keeps its traceback)
    ├── UsageError                   a user's mistake: bad argument, unknown chat or connection
    │   ├── NotFoundError            a named chat, connection, agent or tool does not exist
    │   └── ThreadBusyError          another turn is running on the same thread
    ├── ProviderError                a model provider failed; carries connection and status code
    │   ├── AuthenticationError      401/403: missing or wrong API key
    │   ├── ModelNotFoundError       404: the endpoint has no such model
    │   ├── RateLimitError           429: retried with backoff, honouring Retry-After
    │   ├── ServerError              5xx: retried with backoff, honouring Retry-After
    │   ├── ProviderUnreachableError connection refused, DNS failure
    │   ├── ProviderTimeoutError     no answer in time
    │   └── StreamError              a stream broke off or carried malformed data
    ├── ToolError                    a tool could not be defined or called
    │   ├── ToolArgumentsError       arguments that do not fit the tool's schema
    │   └── McpError                 an MCP server could not be started, reached or called
    └── RoundLimitError              an agent used all its rounds without a final answer

    McpInterrupted (a KeyboardInterrupt) Ctrl-C cancelled an MCP tool call; carries what the
                                     call had gathered (stderr lines, duration)

    StoreWarning (a UserWarning)     a stored value could not be read (malformed JSON written
                                     outside aihub_nb); the row is read with the field's default
"""

from __future__ import annotations

__all__ = [
    "AihubError",
    "AuthenticationError",
    "McpError",
    "McpInterrupted",
    "ModelNotFoundError",
    "NotFoundError",
    "ProviderError",
    "ProviderTimeoutError",
    "ProviderUnreachableError",
    "RateLimitError",
    "RecordNotFoundError",
    "RoundLimitError",
    "SchemaError",
    "ServerError",
    "StoreError",
    "StoreWarning",
    "StreamError",
    "ThreadBusyError",
    "ToolArgumentsError",
    "ToolError",
    "UnknownFieldError",
    "UnknownModelError",
    "UnknownTableError",
    "UsageError",
]


class AihubError(Exception):
    """Base class of every error aihub_nb raises on purpose. `user_facing` errors are a user's to
    fix and are shown as one line; the others (store, schema) are bugs and keep their traceback."""

    user_facing = False


class StoreError(AihubError):
    """The store was asked for something it does not hold."""


class StoreWarning(UserWarning):
    """A stored value could not be read as its type; the rest of the row (and the listing) goes on."""


class UnknownTableError(StoreError):
    def __init__(self, name: str, *, valid: list[str]) -> None:
        self.name = name
        self.valid = sorted(valid)
        super().__init__(f"Unknown table {name!r}; valid tables are: {', '.join(self.valid)}.")


UnknownModelError = UnknownTableError  # the older name


class _InTable(StoreError):
    """An error about one table, named by `table` (`model` is its older name)."""

    table: str

    @property
    def model(self) -> str:
        return self.table


class UnknownFieldError(_InTable):
    def __init__(self, table: str, fields: list[str], *, valid: list[str]) -> None:
        self.table = table
        self.fields = list(fields)
        self.valid = list(valid)
        names = ", ".join(repr(f) for f in self.fields)
        plural = "fields" if len(self.fields) > 1 else "field"
        super().__init__(
            f"Unknown {plural} {names} for table {table}; valid fields are: {', '.join(self.valid)}."
        )


class RecordNotFoundError(_InTable):
    def __init__(self, table: str, id: str) -> None:
        self.table = table
        self.id = id
        super().__init__(f"No {table} with id {id!r}; use store.find({table!r}) to list them.")


class SchemaError(AihubError):
    """schema.prisma could not be parsed."""


class UsageError(AihubError):
    """A user's mistake; shown in a notebook as one line, without a traceback."""

    user_facing = True


class NotFoundError(UsageError):
    """A named object (chat, connection, agent, tool) does not exist."""


class ThreadBusyError(UsageError):
    """Another turn holds the thread's lock."""


class ProviderError(AihubError):
    """A model provider failed. `connection` names the connection, `status_code` the HTTP status."""

    retryable = False
    user_facing = True  # a provider refusing or being down is not a bug

    def __init__(
        self,
        message: str,
        *,
        connection: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.connection = connection
        self.status_code = status_code
        self.retry_after = retry_after
        super().__init__(message)


class AuthenticationError(ProviderError):
    pass


class ModelNotFoundError(ProviderError):
    pass


class RateLimitError(ProviderError):
    retryable = True


class ServerError(ProviderError):
    retryable = True


class ProviderUnreachableError(ProviderError):
    pass


class ProviderTimeoutError(ProviderError):
    pass


class StreamError(ProviderError):
    pass


class ToolError(AihubError):
    """A tool could not be defined, found or called."""

    user_facing = True


class ToolArgumentsError(ToolError):
    """Arguments that do not fit a tool's JSON schema."""


class RoundLimitError(AihubError):
    """An agent's tool-calling loop reached its hard limit on rounds."""

    user_facing = True

class McpError(ToolError):
    """An MCP server could not be started, reached or called. `server` names it; `stderr` holds
    the lines it wrote to stderr around the failure, `duration_ms` how long the call ran."""

    def __init__(
        self, message: str, *, server: str | None = None, stderr: tuple[str, ...] = (), duration_ms: float | None = None
    ) -> None:
        self.server = server
        self.stderr = tuple(stderr)
        self.duration_ms = duration_ms
        super().__init__(message)


class McpInterrupted(KeyboardInterrupt):
    """Ctrl-C cancelled an MCP tool call; the server keeps running. Carries the call's stderr lines
    and how long it ran, so the call can be recorded before the interrupt goes on."""

    def __init__(self, message: str, *, server: str | None = None, stderr: tuple[str, ...] = (), duration_ms: float | None = None) -> None:
        self.server = server
        self.stderr = tuple(stderr)
        self.duration_ms = duration_ms
        super().__init__(message)
