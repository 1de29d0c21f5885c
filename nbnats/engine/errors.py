"""The one table that turns JetStream's error codes into nbnats errors.

The server answers a refused ``$JS.API`` request with
``{"error": {"code": 404, "err_code": 10059, "description": "stream not found"}}``;
:func:`translate` looks the ``err_code`` up here and says, in one sentence,
what is wrong and what to do. Codes are nats-server's (``server/errors.json``).
Sentences speak Python, not magics: the ``%nats`` layer words its own hints.

>>> str(translate({"code": 404, "err_code": 10059, "description": "stream not found"},
...               "reading stream 'X'", stream="X"))
"stream 'X' does not exist — list streams with nbnats.streams(), or add it with nbnats.add_stream('X', subjects=...)"
"""

from __future__ import annotations

from collections.abc import Callable

from nbnats.errors import Conflict, JetStreamError, NatsError, NotFound, PayloadTooLarge, ValidationError

NO_LEADER = ("JetStream has no leader right now (a cluster that lost its meta leader or a stream's quorum, "
             "or nodes restarting)")
NO_LEADER_FIX = "bring the stopped nodes back, or wait a few seconds for an election, then try again"

# err_code → (error class, what is wrong, what to do); {stream}, {consumer}, {what}, {text} are filled in.
_Row = tuple[type[NatsError], str, str]
_LEADERLESS: _Row = (JetStreamError, NO_LEADER, NO_LEADER_FIX)
_OVERLAP: _Row = (JetStreamError, "stream {stream!r} is a WorkQueue: each message goes to one consumer, so consumers "
                  "may not overlap", "give this consumer a filter no other consumer covers, or remove the other consumer")
_CONSUMER_EXISTS: _Row = (JetStreamError, "consumer {consumer!r} already exists on stream {stream!r} with another "
                          "configuration", "remove it first with nbnats.delete_consumer({stream!r}, {consumer!r}), "
                          "or pick another name")
TABLE: dict[int, _Row] = {
    10059: (NotFound, "stream {stream!r} does not exist",
            "list streams with nbnats.streams(), or add it with nbnats.add_stream({stream!r}, subjects=...)"),
    10014: (NotFound, "stream {stream!r} has no consumer {consumer!r}",
            "list its consumers with nbnats.consumers({stream!r})"),
    10037: (NotFound, "stream {stream!r} has no such message", "check the sequence or subject with nbnats.stream_info"),
    10043: (NotFound, "stream {stream!r} has no such sequence ({text})", "pick a sequence the stream holds"),
    10039: (JetStreamError, "JetStream is not enabled for this account",
            "enable JetStream for the account, or use the bundled server (nbnats.start_server())"),
    10076: (JetStreamError, "JetStream is not enabled on this server",
            "start nats-server with -js, or use the bundled server (nbnats.start_server())"),
    10008: _LEADERLESS, 10009: _LEADERLESS,
    10004: (JetStreamError, "the cluster answered {what} only in part (some peers did not reply)", NO_LEADER_FIX),
    10005: (JetStreamError, "not enough peers for {what}: {text}",
            "bring the stopped nodes back, or ask for fewer replicas"),
    10007: _LEADERLESS,
    10058: (JetStreamError, "stream {stream!r} already exists with a different configuration",
            "change it with nbnats.edit_stream({stream!r}, ...), or remove it first with nbnats.delete_stream({stream!r})"),
    10065: (JetStreamError, "the subjects of stream {stream!r} overlap another stream's",
            "a subject can be stored by one stream only: pick other subjects"),
    10074: (JetStreamError, "replicas > 1 need a JetStream cluster, and this server is a single node",
            "use replicas=1, or start a cluster with nbnats.start_server(cluster=3)"),
    10084: (JetStreamError, "stream {stream!r} is a WorkQueue, whose pull consumers must ack explicitly",
            "use ack='explicit'"),
    10099: _OVERLAP, 10100: _OVERLAP,
    10013: _CONSUMER_EXISTS, 10148: _CONSUMER_EXISTS, 10105: _CONSUMER_EXISTS,
    10071: (Conflict, "the write lost a compare-and-set: {text}", "read the current revision and try again"),
    10070: (Conflict, "the write lost a compare-and-set on the message id: {text}", "read the current state and try again"),
    10164: (Conflict, "the write lost a compare-and-set: {text}", "read the current revision and try again"),
    10054: (PayloadTooLarge, "the message is larger than stream {stream!r} allows ({text})",
            "send a smaller message, or raise the stream's max_msg_size"),
    10023: (JetStreamError, "JetStream has no room for {what}: insufficient resources",
            "remove data or streams, or give the server more storage (max_file_store / max_mem_store)"),
    10047: (JetStreamError, "JetStream has no storage left for {what}",
            "remove data or streams, or give the server more storage (max_file_store)"),
    10028: (JetStreamError, "JetStream has no memory left for {what}",
            "remove data or memory streams, or give the server more memory (max_mem_store)"),
    10002: (JetStreamError, "the account's JetStream limits are used up ({text})", "remove data or raise the account's limits"),
    10026: (JetStreamError, "stream {stream!r} has reached its maximum number of consumers", "remove unused consumers"),
    10027: (JetStreamError, "the account has reached its maximum number of streams", "remove unused streams"),
    10077: (JetStreamError, "stream {stream!r} could not store the message: {text}",
            "when it is full: remove data, raise its limits, or use discard='old'"),
    10166: (JetStreamError, "stream {stream!r} does not allow per-message TTLs",
            "create it with allow_msg_ttl=True (KV: a bucket ttl instead)"),
    10165: (ValidationError, "the message's TTL is not valid ({text})", "pass ttl='1s' or more, or 'never'"),
    10168: (JetStreamError, "stream {stream!r} does not allow counters", "create it with allow_counter=True"),
    10169: (ValidationError, "a counter needs an increment ({text})", "use nbnats.counter_incr(subject, n)"),
    10170: (ValidationError, "a counter message carries no payload ({text})", "use nbnats.counter_incr(subject, n)"),
    10171: (ValidationError, "the counter increment is not a whole number ({text})", "pass n as an int"),
    10172: (JetStreamError, "the counter in stream {stream!r} is broken ({text})", "purge that subject to restart it"),
    10174: (JetStreamError, "stream {stream!r} does not allow atomic publish",
            "turn it on with nbnats.edit_stream({stream!r}, allow_atomic=True)"),
    10176: (JetStreamError, "the atomic batch was incomplete, so none of it was stored", "publish it again"),
    10199: (JetStreamError, "the atomic batch is larger than the server allows ({text})", "send smaller batches"),
    10201: (Conflict, "the atomic batch repeats a message id (twice in it, or one the stream already stored within "
            "its duplicate window), so none of it was stored", "publish only the rows not yet stored"),
    10210: (JetStreamError, "too many atomic batches are open on the server right now", "try again shortly"),
    10188: (JetStreamError, "stream {stream!r} does not allow scheduled messages", "create it with allow_schedules=True"),
    10189: (ValidationError, "the schedule is not a pattern the server knows ({text})", "use '@at 2026-12-01T10:00:00Z'"),
    10190: (ValidationError, "the schedule target must be another subject of stream {stream!r}",
            "target a subject the stream stores, other than the schedule's own"),
    10061: (JetStreamError, "the replicas of stream {stream!r} cannot be changed this way ({text})",
            "remove and add the stream again with the new replicas"),
    10052: (JetStreamError, "stream {stream!r} refused the change: {text}", "check the new settings"),
    10025: (JetStreamError, "JetStream could not read the request for {what}: {text}", "check the arguments"),
    10003: (JetStreamError, "JetStream refused {what} as a bad request", "check the arguments"),
}


def translate(err: dict, what: str, stream: str | None = None, consumer: str | None = None) -> NatsError:
    """The nbnats error for a JetStream API error object (``resp["error"]``).

    >>> translate({"code": 503, "err_code": 10008, "description": "JetStream system temporarily unavailable"},
    ...           "reading stream 'X'").what.startswith("JetStream has no leader")
    True
    """
    code, text = err.get("err_code"), err.get("description") or "unknown error"
    row = TABLE.get(code)
    if row is None:
        if err.get("code") == 503:
            return JetStreamError(NO_LEADER, NO_LEADER_FIX)
        return JetStreamError(f"JetStream refused {what}: {text}", "check the arguments")
    cls, msg, fix = row
    if code == 10059 and not stream:
        msg = "the stream does not exist ({what})"
    fill: Callable[[str], str] = lambda s: s.format(stream=stream, consumer=consumer, what=what, text=text)
    return cls(fill(msg), fill(fix))


def codes() -> list[int]:
    """Every JetStream error code the table words itself.

    >>> 10059 in codes()
    True
    """
    return sorted(TABLE)
