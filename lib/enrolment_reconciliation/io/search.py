"""Sunbird search service client for collection status, with a TTL cache that really caches.

Used only for courses whose leafnodes key is missing (docs/behaviour.md §7). The original job
discarded its cache's updates and called search for every such event; this one stores each answer
for
``activity.collection.status.cache.expiry`` seconds (docs/design.md §3.5). Transport errors and
non-200 answers raise :class:`SearchServiceError` after bounded retries, so the caller fails
the micro-batch and retries it instead of silently skipping requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import requests

from enrolment_reconciliation.runtime.config import SearchSettings
from enrolment_reconciliation.runtime.faults import InfrastructureError

log = logging.getLogger(__name__)
STATUSES = ["Live", "Unlisted", "Retired"]


class SearchServiceError(InfrastructureError):
    """The search service could not be asked (unreachable, timeout, non-200, bad body)."""


class CollectionStatusClient:
    """``status_of(courseId)`` -> "Live" | "Unlisted" | "Retired" | None (no such collection)."""

    def __init__(
        self,
        base_path: str,
        *,
        ttl_seconds: float = 3600,
        timeout_seconds: float = 10,
        retries: int = 2,
        api_key: str | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = base_path.rstrip("/") + "/v3/search"
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._retries = retries
        self._session = session or requests.Session()
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}
        self.calls = 0  # HTTP requests made, for counters and tests

    @classmethod
    def of(cls, search: SearchSettings) -> CollectionStatusClient:
        return cls(search.base_path, ttl_seconds=search.status_cache_expiry, api_key=search.api_key)

    def _ask(self, course_id: str) -> str | None:
        body = {
            "request": {
                "filters": {
                    "objectType": "Collection",
                    "identifier": course_id,
                    "status": STATUSES,
                },
                "fields": ["status"],
            }
        }
        last_error: Exception | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(min(2**attempt, 10) * 0.25)
            self.calls += 1
            try:
                response = self._session.post(
                    self._url, json=body, headers=self._headers, timeout=self._timeout
                )
            except requests.RequestException as error:
                last_error = error
                continue
            if response.status_code != 200:
                last_error = SearchServiceError(
                    f"search-service returned HTTP {response.status_code} for {course_id}"
                )
                if response.status_code < 500:
                    break
                continue
            try:
                result = response.json().get("result", {})
                count = int(result.get("count") or 0)
                return str(result["content"][0]["status"]) if count > 0 else None
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
                raise SearchServiceError(
                    f"search-service answered an unreadable body for {course_id}: {error}"
                ) from error
        raise SearchServiceError(
            f"search-service at {self._url} failed for {course_id}: {last_error}"
        ) from last_error

    def status_of(self, course_id: str) -> str | None:
        now = self._clock()
        cached = self._cache.get(course_id)
        if cached and cached[0] > now:
            return cached[1]
        status = self._ask(course_id)
        self._cache[course_id] = (now + self._ttl, status)
        log.info("collection %s has status %s (cached %ss)", course_id, status, self._ttl)
        return status
