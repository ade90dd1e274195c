"""Upload throughput of the speckle_jupyter extension on loopback (issue 3: >= 100 MB/s, 1 GB).

Starts a real ``jupyter-server`` with the extension in a scratch folder, uploads a generated,
valid ``.npy`` stack of about 1 GB through the HTTP protocol (``POST uploads``, ``PUT`` chunks of
64 MiB, ``POST finish``, exactly what the dashboard's uploader does), checks the placed file's
SHA-256 and prints MB/s (1 MB = 10^6 bytes)::

    .venv/bin/python benchmarks/bench_upload.py                # 1 GB, 64 MiB chunks
    .venv/bin/python benchmarks/bench_upload.py --mb 200 --chunk-mib 4
    .venv/bin/python benchmarks/bench_upload.py --json out.json

Numbers: "upload" is from the first request to the last chunk's answer; "with finish" adds the
validation (speckle.io.open_dataset reads the first and last frames) and the atomic placement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

FLOOR_MB_S = 100.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1000.0, help="file size in MB (10^6 bytes)")
    parser.add_argument("--chunk-mib", type=float, default=64.0, help="chunk size in MiB")
    parser.add_argument("--frame", type=int, default=512, help="frame side in pixels (uint16)")
    parser.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from speckle_jupyter.testing import NpyStream, UploadClient, jupyter_server  # noqa: PLC0415

    frame_bytes = args.frame * args.frame * 2
    n_frames = max(1, round(args.mb * 1e6 / frame_bytes))
    stream = NpyStream((n_frames, args.frame, args.frame), "<u2")
    chunk = int(args.chunk_mib * 2**20)
    with tempfile.TemporaryDirectory(prefix="bench_upload_") as tmp:
        tmp = Path(tmp)
        env = {"SPECKLE_UPLOAD_DIR": str(tmp / "uploads"),
               "SPECKLE_UPLOAD_QUOTA_BYTES": str(stream.size + 2**30),
               "SPECKLE_UPLOAD_CHUNK_BYTES": str(max(chunk, 2**16)),
               "CUDA_VISIBLE_DEVICES": ""}
        with jupyter_server(tmp / "server", env) as server:
            client = UploadClient(server.api, server.token)
            client.session.get(server.api + "status").raise_for_status()  # warm connection
            t0 = time.perf_counter()
            r = client.create("bench.npy", stream.size)
            r.raise_for_status()
            upload_id = r.json()["id"]
            offset = client.send(upload_id, stream.read, stream.size, chunk_size=chunk)
            t1 = time.perf_counter()
            r = client.finish(upload_id)
            t2 = time.perf_counter()
            if offset != stream.size or r.status_code != 200:
                print(f"upload failed: offset {offset} of {stream.size}, finish "
                      f"{r.status_code} {r.text}", file=sys.stderr)
                return 1
            result = r.json()
            placed = Path(result["path"])
            verified = None
            if not args.no_verify:
                h = hashlib.sha256()
                with open(placed, "rb") as fh:
                    while block := fh.read(16 * 2**20):
                        h.update(block)
                verified = h.hexdigest() == stream.sha256()
    size_mb = stream.size / 1e6
    upload_mb_s = size_mb / (t1 - t0)
    total_mb_s = size_mb / (t2 - t0)
    ok = upload_mb_s >= FLOOR_MB_S and verified is not False
    figures = {
        "bytes": stream.size, "chunk_bytes": chunk, "chunks": -(-stream.size // chunk),
        "shape": result["shape"], "upload_s": round(t1 - t0, 3),
        "finish_s": round(t2 - t1, 3), "upload_mb_s": round(upload_mb_s, 1),
        "with_finish_mb_s": round(total_mb_s, 1), "sha256_identical": verified,
        "floor_mb_s": FLOOR_MB_S, "pass": ok, "host": platform.node(),
        "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    print(f"speckle_jupyter upload on loopback: {size_mb:.0f} MB in {figures['chunks']} chunks "
          f"of {chunk / 2**20:g} MiB")
    print(f"| measure | value | floor | verdict |\n| --- | --- | --- | --- |\n"
          f"| upload throughput | {upload_mb_s:.0f} MB/s ({t1 - t0:.2f} s) | "
          f"{FLOOR_MB_S:.0f} MB/s | {'PASS' if upload_mb_s >= FLOOR_MB_S else 'FAIL'} |\n"
          f"| with validation and placement | {total_mb_s:.0f} MB/s (finish "
          f"{t2 - t1:.2f} s) | | |\n"
          f"| bytes identical (SHA-256) | {verified} | | |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
