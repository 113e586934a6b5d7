"""The one exception for requests a client must fix: the server answers it with its 4xx status and
message (main.install_error_handlers), never a 500."""


class InvalidRequest(ValueError):
    """A request the client must fix; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
