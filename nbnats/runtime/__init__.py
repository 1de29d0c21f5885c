"""The runtime: the loop thread, connections, the bundled nats-server, the session's own things."""
