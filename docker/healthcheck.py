"""Container HEALTHCHECK: exit 0 when GET /readyz on the local service answers 200."""

import os
import sys
import urllib.request

PORT = os.environ.get("SSD_HTTP_PORT", "8080")

try:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz", timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
