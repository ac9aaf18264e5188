"""The optional alert webhook: a JSON POST, in the background, with bounded retries.

`post_in_background(url, body)` returns at once with a Future; one worker thread posts
(timeout per attempt, retries with exponential backoff), so a receiver that is down or
hangs never delays the controller tick. The URL is a secret (it may hold a token): it is
never logged, only its host.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

ATTEMPTS = 4
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = 0.5
"""The first wait between attempts; doubled after each failure (0.5, 1, 2 s)."""

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sml-alert-webhook")


def post_in_background(
    url: str,
    body: dict[str, Any],
    *,
    attempts: int = ATTEMPTS,
    timeout: float = TIMEOUT_SECONDS,
    backoff: float = BACKOFF_SECONDS,
) -> Future[bool]:
    """POST `body` as JSON to `url` from the webhook thread; the Future says if it arrived."""
    return _executor.submit(post_with_retries, url, body, attempts, timeout, backoff)


def post_with_retries(
    url: str, body: dict[str, Any], attempts: int, timeout: float, backoff: float
) -> bool:
    """POST until a 2xx answer, at most `attempts` times; True if delivered.

    A 4xx answer other than 408/429 is final (the receiver refuses this body).
    """
    data = json.dumps(body, default=str).encode()
    host = urlsplit(url).hostname or "?"
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(  # noqa: S310 (http(s) checked by Settings)
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                if 200 <= response.status < 300:
                    return True
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                log.error(
                    "alert webhook on %s refused %s: HTTP %s", host, body.get("event"), exc.code
                )
                return False
            log.warning("alert webhook on %s: HTTP %s (attempt %s)", host, exc.code, attempt)
        except (OSError, TimeoutError) as exc:
            log.warning("alert webhook on %s: %s (attempt %s)", host, type(exc).__name__, attempt)
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    log.error(
        "alert webhook on %s: %s not delivered after %s attempts", host, body.get("event"), attempts
    )
    return False


def drain(timeout: float | None = None) -> None:
    """Wait until every webhook POST queued so far is done (delivered or given up).

    Raises:
        TimeoutError: still posting after `timeout` seconds.
    """
    _executor.submit(lambda: None).result(timeout=timeout)
