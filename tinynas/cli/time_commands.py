"""``tinynas latency time``: ONNX models timed side by side, as a latency table times its ops."""

from __future__ import annotations


from ..errors import UserError
from .format import table
from .settings_flags import Flag, add_settings, given_settings, read_settings

FLAGS = (Flag("size"), Flag("latency_db", metavar="TABLE", old=("--db",), text=True), Flag("runtime", text=True),
         Flag("threads"), Flag("rounds"), Flag("runs"), Flag("out", metavar="FILE.json", text=True))


def _settings() -> type:
    from ..api import LatencyTimeSettings

    return LatencyTimeSettings

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
    add_settings(t, _settings(), FLAGS, "rounds=5 runs=20", words_in="files")
    t.set_defaults(func=run_time)


def run_time(args) -> int:
    from ..api import time_with

    settings = read_settings(_settings(), given_settings(args, FLAGS), FLAGS)
    if not args.files:
        raise UserError("FILE", "", "name at least one ONNX file to time")
    result = time_with(args.files, settings)
    fastest = min(m.median_ms for m in result.models)
    rows = [[m.name, f"{m.median_ms:.3f}", f"{m.q25_ms:.3f}-{m.q75_ms:.3f}", f"{m.min_ms:.3f}",
             f"{m.median_ms / fastest:.3f}"] for m in result.models]
    print(table(["model", "median ms", "IQR ms", "min ms", "x fastest"], rows))
    s = result.settings
    print(f"{s['runtime']} {s.get('runtime_version')} on {s.get('device_name')}, {s['threads']} thread(s), "
          f"clock {s['clock']}, {result.rounds} rounds x {result.runs_per_round} runs at {result.size} px")
    if settings.out:
        print(f"wrote {settings.out}")
    return 0
