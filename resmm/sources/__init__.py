"""Source data: the Parquet contract, shard listing and footers, fingerprints, quarantine and the data profile."""
