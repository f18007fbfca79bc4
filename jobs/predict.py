"""Batch inference with a registered model over Parquet shards in the contract.

    resmm predict --model-uri models:/resmm@champion --input URL --output DIR [--concurrency N]

Writes Parquet with sample_id, predicted_label and one prob_<class> column per class: exactly one output row
per input row (checked before exit). Missing modalities are fine; labels are not needed.
"""
from __future__ import annotations

import argparse
import sys
import time

if not __package__:  # python jobs/predict.py
    import _bootstrap  # noqa: F401

from jobs._common import USER_ERRORS, report_user_error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-uri", default="models:/resmm@champion")
    parser.add_argument("--input", required=True, help="shard directory, glob or URL")
    parser.add_argument("--output", required=True, help="output directory (local or URL)")
    parser.add_argument("--concurrency", type=int, default=1, help="model-holding actors")
    parser.add_argument("--batch-rows", type=int, default=256)
    args = parser.parse_args(argv)

    from pipelines.inference import predict_source
    from pipelines.ingest import scan_source
    from pipelines.runtime import connect_ray
    from resmm.sources.shards import ShardError, list_parquet_files, open_filesystem, read_footers
    from resmm.tracking.runs import check_tracking_access, resolve_tracking_uri

    started = time.perf_counter()
    try:
        check_tracking_access(resolve_tracking_uri())
        source = scan_source(args.input, [], labelled=False)
        if source.unreadable:  # prediction owes a row for every input row: refuse rather than skip
            bad = source.unreadable[0]
            raise ShardError(f"{bad['path']}: {bad['reason']} ({len(source.unreadable)} unreadable file(s))")
        out_fs, out_path = open_filesystem(args.output)
        if out_fs.exists(out_path) and out_fs.ls(out_path):
            raise ShardError(f"output '{args.output}' already holds files; choose a new location")
    except USER_ERRORS as exc:
        return report_user_error(exc)
    connect_ray()
    print(f"[predict] {source.num_rows} rows in {len(source.shards)} shards with {args.model_uri}")
    predictions = predict_source(source, args.model_uri, resolve_tracking_uri(),
                                 concurrency=args.concurrency, batch_rows=args.batch_rows)
    predictions.write_parquet(args.output)
    fs, files = list_parquet_files(args.output)
    written = sum(s.num_rows for s in read_footers(fs, files)[0])
    if written != source.num_rows:
        print(f"resmm: wrote {written} prediction rows for {source.num_rows} input rows", file=sys.stderr)
        return 1
    print(f"[predict] wrote {written} rows to {args.output} in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
