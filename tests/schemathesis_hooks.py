"""Loaded by the schemathesis CLI (SCHEMATHESIS_HOOKS, see test_schemathesis.py):
tus parts (application/offset+octet-stream) are sent as raw bytes, like
application/octet-stream."""

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
