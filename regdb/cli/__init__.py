"""The command lines: ``app`` (the ``regdb`` click group and its error boundary) with its commands by family
(``removal``, ``live``, ``du``, ``bi``), ``output`` (the one renderer), ``profiles``, ``progress``, and
``dregutil`` (docker-registry-util's own command line on regdb's library). Nothing imports this package but
the console scripts' entry (``regdb.entry``)."""
