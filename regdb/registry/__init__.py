"""Talking to a registry: the only package that does HTTP.

``reference`` (a registry's URL and display name, repository and tag names), ``client`` (the transport with
retries and rate limits, the Registry v2 / OCI distribution calls), ``auth`` (basic, digest and bearer-token
challenges), ``credentials`` (Docker config files and credential helpers), ``connect`` (a client built the way
the command line builds one). Nothing here knows about the inventory.
"""
