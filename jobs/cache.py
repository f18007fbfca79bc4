"""List or prune the decoded-feature cache of a config (data.cache_path, else <train.storage_path>/feature-cache).

    resmm cache [--config YAML] [key=value ...]                          # entries, bytes, oldest
    resmm cache [--config YAML] [key=value ...] --older-than-days 30     # delete entries written before

Entries are never updated in place, so an entry's age is the time since its shard was last decoded with those
settings. Deleting one is always safe: the next run that needs it decodes that shard again.
"""
from __future__ import annotations

import argparse
import sys

if not __package__:  # python jobs/cache.py
    import _bootstrap  # noqa: F401

from jobs._common import run_job


def cache_report(cfg, older_than_days: float | None) -> dict:
    from resmm.data.cache import cache_url, list_entries, prune_entries
    from resmm.sources.shards import open_filesystem

    url = cache_url(cfg)
    fs, root = open_filesystem(url)
    entries = list_entries(fs, root)
    pruned = prune_entries(fs, root, older_than_days) if older_than_days is not None else []
    report = {"location": url, "entries": len(entries), "bytes": sum(e["bytes"] for e in entries),
              "pruned_entries": len(pruned), "pruned_bytes": sum(e["bytes"] for e in pruned)}
    print(f"[resmm] feature cache at {url}: {report['entries']} entries, {report['bytes'] / 2**20:.1f} MiB"
          + (f"; deleted {len(pruned)} written over {older_than_days:g} days ago "
             f"({report['pruned_bytes'] / 2**20:.1f} MiB)" if older_than_days is not None else ""))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--older-than-days", type=float, help="delete the entries written more than N days ago")
    parser.add_argument("--summary-json", help="write the report as JSON to this path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.cache_path=s3://bucket/cache")
    args = parser.parse_args(argv)
    return run_job(lambda cfg: cache_report(cfg, args.older_than_days), args.config, args.overrides,
                   args.summary_json)


if __name__ == "__main__":
    sys.exit(main())
