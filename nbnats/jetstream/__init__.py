"""JetStream features: streams and consumers, reading with acknowledgement, replay.

Everything here talks to the server through :mod:`nbnats.engine`.
"""
