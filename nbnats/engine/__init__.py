"""The JetStream engine: the only code in nbnats that speaks JetStream.

* :mod:`.api` — the ``$JS.API`` request, paging, server versions;
* :mod:`.errors` — the one table of JetStream error codes;
* :mod:`.acks` — the one parser of ``$JS.ACK`` reply subjects;
* :mod:`.pull` — pull requests and acknowledgements;
* :mod:`.ordered` — an ordered consumer of nbnats's own;
* :mod:`.publish` — JetStream publishes that ride out elections;
* :mod:`.get` — reading one stored message.

Everything runs on the nbnats loop thread; the features above it wrap it in sync calls.
"""
