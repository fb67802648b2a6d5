"""Tunables in one place, so a reader finds every number that shapes behaviour without a search.

Units are in the names. Values that come from a vendor's documentation say so; the rest are our
choices and may be overridden per client.
"""

from __future__ import annotations

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_DEADLINE_SECONDS",
    "DOWNLOAD_ATTEMPTS",
    "FETCH_READ_TIMEOUT_SECONDS",
    "FETCH_TIMEOUT_SECONDS",
    "INITIAL_RETRY_DELAY_SECONDS",
    "JOB_HEARTBEAT_SECONDS",
    "JOB_LEASE_SECONDS",
    "MAX_DOWNLOAD_BYTES",
    "MAX_INPUT_PIXELS",
    "MAX_MASK_DECODE_PIXELS",
    "MAX_REDIRECTS",
    "MAX_REFERENCE_BYTES",
    "MAX_RETRY_AFTER_SECONDS",
    "MAX_RETRY_DELAY_SECONDS",
    "PIXEL_STRIP_BYTES",
    "POLL_INITIAL_SECONDS",
    "POLL_MAX_SECONDS",
    "READ_CHUNK_BYTES",
    "SNIFF_BYTES",
    "WAIT_BUSY_SECONDS",
]

# A connect attempt that takes this long is treated as "did not start", which is safe to retry.
CONNECT_TIMEOUT_SECONDS = 10.0
# One deadline bounds every HTTP call of a job: model time on all vendors is well under this.
DEFAULT_DEADLINE_SECONDS = 300.0

# Every vendor documents 10 MB for the character reference (Ideogram: total of all references).
MAX_REFERENCE_BYTES = 10 * 1024 * 1024
# Pixels an input image may declare. A 10 MB file can declare billions (a 69-byte PNG: 10^10), and
# whatever decodes it pays for every one. 8192x8192 holds any phone camera's photo (48 MP).
MAX_INPUT_PIXELS = 8192 * 8192
# Checking a mask's pixels decodes at most this many at once (4 bytes each): masks in a form that can be
# read in strips (8-bit PNG) are read that way, JPEGs are decoded at a reduced scale, and the rest up to this.
MAX_MASK_DECODE_PIXELS = 8 * 1024 * 1024
# Raw (decompressed) bytes of one strip of rows when a PNG mask is read strip by strip.
PIXEL_STRIP_BYTES = 1024 * 1024
# A vendor's output image is a few MB at most; this only guards against a runaway body.
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
MAX_REDIRECTS = 5
DOWNLOAD_ATTEMPTS = 4
# A URL fetched on a user's behalf (an input, a vendor's output image; ideochar._netguard) has its own
# bounds, whatever the job's deadline: each read, and the whole answer (a server trickling a byte at a
# time satisfies every read). 10 MB, the largest input, needs about 350 KB/s to arrive in time.
FETCH_READ_TIMEOUT_SECONDS = 10.0
FETCH_TIMEOUT_SECONDS = 30.0

# Enough to recognise JPEG/PNG/WebP and, for PNG and most JPEGs, read the pixel size.
SNIFF_BYTES = 64 * 1024
READ_CHUNK_BYTES = 64 * 1024
# A request body at most this large is read on the event loop: a worker thread's round trip costs more
# than reading a few chunks from a local file. Larger bodies read each chunk in a thread.
INLINE_READ_BYTES = 256 * 1024

# Backoff for requests that are safe to repeat (polls, downloads): jittered exponential, capped.
INITIAL_RETRY_DELAY_SECONDS = 0.25
MAX_RETRY_DELAY_SECONDS = 8.0
# A Retry-After longer than this is not waited for: the router fails over instead.
MAX_RETRY_AFTER_SECONDS = 60.0

# Status polling starts fast (a finished job is noticed quickly) and backs off (a long queue is not hammered).
POLL_INITIAL_SECONDS = 0.05
# When a flow is done with an event stream, the async driver reads the stream's end for this long so its
# connection goes back to the pool instead of being closed (a vendor typically ends a status stream right
# after the final status); a stream still open after that is closed as before.
STREAM_DRAIN_SECONDS = 0.05
POLL_MAX_SECONDS = 2.0

# A journaled job is owned by the process running it, which renews its lease this often. Another machine
# may take the job over only once the lease has run out (on the same machine, a dead pid frees it at once).
JOB_LEASE_SECONDS = 60.0
JOB_HEARTBEAT_SECONDS = 15.0
# ``wait`` on a job another live process is finishing (a webhook, another worker) looks again this often.
WAIT_BUSY_SECONDS = 0.5
