"""Fetching an original from a URL (?source=): the address guard, the transport, the records of downloads."""
