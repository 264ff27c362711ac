"""The servers of the HTTP port: the fast path on httptools, the aiohttp
application behind it, and the port's limits."""
