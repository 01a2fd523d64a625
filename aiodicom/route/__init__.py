"""The routing node (`aiodicom route`): receive, decide by rules, queue durably, forward with retries.

    config.py     the TOML configuration, validated whole (`aiodicom route --check`)
    rules.py      conditions and actions; first match wins unless `continue = true`
    attributes.py attributes by keyword or tag; an instance as the rules see it (raw peeked values)
    morph.py      tag morphing applied before forwarding
    names.py      UIDs by keyword
    ingest.py     receiving: the spool (a FileStore), the queues, Success once durable
    proxy.py      proxy mode: the destination's answer relayed
    queue.py      the on-disk queue per destination, dead letters, backoff, the in-memory ready queue
    pool.py       pooled associations per destination
    forwarder.py  delivery workers: retries, pauses, dead letters, one log line per instance
    status.py     counters, status.json, `route status` and `route retry`
    router.py     all of it in one task group
"""

from .config import ConfigError, RouterConfig, load_config, parse_config
from .router import Router

__all__ = ["ConfigError", "Router", "RouterConfig", "load_config", "parse_config"]
