"""The errors users see: one sentence naming the problem, one naming the fix.

Every user-facing failure is an :class:`NatsError`. ``str(err)`` is
``"<what is wrong> — <what to do>"``; the ``%nats`` magic prints it as
``nbnats: <what> — <fix>`` with no traceback.

>>> raise InvalidSubject("subject 'a..b' has an empty token", "write tokens between dots, e.g. 'a.b'")
Traceback (most recent call last):
...
nbnats.errors.InvalidSubject: subject 'a..b' has an empty token — write tokens between dots, e.g. 'a.b'
"""

from __future__ import annotations


class NatsError(Exception):
    """Base of every nbnats error: ``what`` went wrong, and the ``fix``.

    >>> str(NatsError("no server", "start one with %nats server start"))
    'no server — start one with %nats server start'
    """

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(what if not fix else f"{what} — {fix}")

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: one line, ``nbnats: <what> — <fix>``."""
        return [f"nbnats: {self}"]


class ValidationError(NatsError, ValueError):
    """Input broke a NATS rule; nothing was sent."""


class InvalidSubject(ValidationError):
    """A subject the server would refuse."""


class InvalidName(ValidationError):
    """A stream, consumer, bucket or object name the server would refuse."""


class InvalidKey(ValidationError):
    """A KV key the server would refuse."""


class InvalidHeader(ValidationError):
    """A header name or value that cannot be sent."""


class PayloadTooLarge(ValidationError):
    """A payload larger than the server's max_payload."""


class ServerError(NatsError):
    """The bundled nats-server could not be found, started or stopped."""


class NotConnected(NatsError):
    """No connection, or the server went away."""


class ConnectError(NotConnected):
    """Connecting failed (unreachable, refused credentials, TLS)."""


class Timeout(NatsError, TimeoutError):
    """A wait ran past its timeout; the message names what was awaited."""


class NoResponders(NatsError):
    """A request found nobody subscribed to its subject."""


class ServiceError(NatsError):
    """A responder answered that its handler failed (a ``Nats-Service-Error`` header)."""


class LoopThreadError(NatsError, RuntimeError):
    """A blocking call was made from nbnats's own event-loop thread."""


class NotFound(NatsError, LookupError):
    """A stream, consumer, bucket, key or object that does not exist."""


class JetStreamError(NatsError):
    """JetStream refused a request or is not enabled."""


class Conflict(NatsError):
    """A compare-and-set write lost: the key changed since it was read, or already exists."""


class KeyDeleted(NotFound):
    """A KV key that existed and was deleted or purged (a key never written is plain NotFound)."""


class SchemaError(ValidationError):
    """A payload broke its subject's registered schema, or a schema is invalid."""


class CodecError(ValidationError):
    """An unknown codec, or a payload its codec cannot encode."""


class PermissionDenied(NatsError):
    """The connection's user may not do this, e.g. a system-account report without the system user."""
