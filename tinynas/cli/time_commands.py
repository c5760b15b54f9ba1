"""``tinynas latency time``: ONNX models timed side by side, as a latency table times its ops."""

from __future__ import annotations


from .argtypes import old_spellings, positive_int
from .format import table

TIME_HELP = """\
Time ONNX detectors (yours, a peer's export, the model you ship today) in one runtime and
thread count, interleaved: every round times every model in turn, the order rotated each
round, so the machine's drift hits all of them alike. With --latency-db the runtime, device, thread
count and clock are the table's, so the figures stand beside what the table predicts."""


def register(lsub) -> None:
    import argparse

    t = lsub.add_parser("time", help="time ONNX models side by side in a runtime (interleaved rounds)",
                        description=TIME_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("files", nargs="+", metavar="FILE", help="ONNX files (one fp32 image input each)")
    t.add_argument("--size", type=positive_int, default=320, help="image side timed (default %(default)s)")
    old_spellings(t, t.add_argument("--latency-db", default="", metavar="TABLE",
                                    help="take runtime, device, threads and clock from this latency table's "
                                         "sidecar"), "--db")
    t.add_argument("--runtime", default=None, type=str.lower, help="onnxruntime (default), openvino or tensorrt")
    t.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: the table's, or 1)")
    t.add_argument("--rounds", type=positive_int, default=11, help="interleaved rounds (default %(default)s)")
    t.add_argument("--runs", type=positive_int, default=30, help="timed runs per model per round (default %(default)s)")
    t.add_argument("--out", default=None, metavar="FILE.json", help="also write every figure as JSON")
    t.set_defaults(func=run_time)


def run_time(args) -> int:
    from ..api import time_onnx_files

    result = time_onnx_files(args.files, args.size, latency_db=args.latency_db or None, runtime=args.runtime,
                             threads=args.threads, rounds=args.rounds, runs=args.runs, out=args.out)
    fastest = min(m.median_ms for m in result.models)
    rows = [[m.name, f"{m.median_ms:.3f}", f"{m.q25_ms:.3f}-{m.q75_ms:.3f}", f"{m.min_ms:.3f}",
             f"{m.median_ms / fastest:.3f}"] for m in result.models]
    print(table(["model", "median ms", "IQR ms", "min ms", "x fastest"], rows))
    s = result.settings
    print(f"{s['runtime']} {s.get('runtime_version')} on {s.get('device_name')}, {s['threads']} thread(s), "
          f"clock {s['clock']}, {result.rounds} rounds x {result.runs_per_round} runs at {result.size} px")
    if args.out:
        print(f"wrote {args.out}")
    return 0
