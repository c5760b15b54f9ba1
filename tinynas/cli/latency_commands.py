"""``tinynas latency build|merge|predict|validate|import-tinynas|rehash|time``: per-chip latency tables."""

from __future__ import annotations

import argparse

from .. import api
from ..errors import UserError
from .argtypes import old_spellings, positive_int
from .format import table

DEFAULT_DB = "cpu-fp32"

BUILD_HELP = """\
Enumerate every convolution the search space(s) can produce (kind, C_in, C_out, kernel,
stride, input size, fused residual) and time each one on the device, as deployed: BatchNorm
folded, activation applied, the residual add counted on the last conv of a unit. Rows are
appended as they are measured; run the same command again to resume an interrupted build.
Measurement is serial by design: running two builds (or anything heavy) at once on the same
device falsifies both, so keep the machine quiet while it runs. A second build of the same
table while one runs is refused at once, naming the running one."""

MERGE_HELP = """\
Join the shards of one grid into one table. Build them on several identical boards at once
(`tinynas latency build ... --shard I/N --out shard-I.csv` on board I, same spaces and
settings everywhere), bring the shard files to one machine and merge them. The merge checks
that the shards cover the grid exactly once and were measured the same way (device, dtype,
batch, threads, clock, allocator, warm-up, runs, torch version, ...); anything else is
refused, naming the shard and the field. Calibrated (CPU) shards are rescaled to the
median of their nominal reference times."""

REHASH_HELP = """\
Every table records the sha256 of its CSV in its sidecar, and a table whose CSV no longer
matches is refused on load as modified or damaged. After editing a table's CSV on purpose
(removing a bad row, merging measurements), rehash checks every row as the loader does and
records the CSV's new sha256 and row count, so the table loads again. A CSV whose row count
differs from the sidecar's is refused (it may be another table's, copied over this one) unless
--rows states the new count."""


def register(sub) -> None:
    p = sub.add_parser("latency", help="per-chip latency tables: build, merge, predict, validate, calibrate, "
                                       "import-tinynas, rehash, list, time")
    lsub = p.add_subparsers(dest="latency_command", metavar="ACTION")
    lsub.required = True
    _register_build(lsub)
    _register_merge(lsub)
    _register_predict(lsub)
    _register_validate(lsub)
    _register_import(lsub)
    _register_rehash(lsub)
    _register_list(lsub)
    from .calibrate_commands import register as register_calibrate
    from .time_commands import register as register_time
    register_calibrate(lsub)
    register_time(lsub)


def _register_build(lsub) -> None:
    b = lsub.add_parser("build", help="measure a space's convolutions into a latency table",
                        description=BUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--space", action="append", default=[],
                   help="search space file or shipped name (repeat for several spaces in one table)")
    b.add_argument("--model", action="append", default=[], metavar="RECIPE",
                   help="a detector (model recipe or shipped name) whose every convolution joins the grid, "
                        "so `latency predict --detector` can price it whole (repeatable). With --space: "
                        "instead of the bare backbones, every detector a search of the space builds in this "
                        "recipe (wrapped backbone, neck and head over the space's level widths), for a "
                        "whole-detector latency budget")
    old_spellings(b, b.add_argument("--size", type=positive_int, default=640,
                                    help="image size of the --model detectors (default %(default)s; a "
                                         "12-channel space at 320 is a 640 image after the Focus stem)"),
                  "--model-size")
    b.add_argument("--out", required=True, help="table to write (CSV; its .json sidecar goes beside it)")
    b.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default %(default)s)")
    b.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16", "int8"],
                   help="default %(default)s (int8: TensorRT only)")
    b.add_argument("--runtime", default="torch", type=str.lower,
                   help="what times each op: torch (eager), or the deployment runtime the model will run in "
                        "(onnxruntime, openvino, tensorrt), timing each op as a static-shape ONNX graph "
                        "(default %(default)s)")
    old_spellings(b, b.add_argument("--batch-size", type=positive_int, default=1,
                                    help="batch size timed (default %(default)s)"), "--batch")
    b.add_argument("--resolution", type=positive_int, default=None,
                   help="the backbones' input side (default: the space's)")
    b.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads, fixed and recorded (default %(default)s)")
    b.add_argument("--clock", choices=["auto", "thread-cpu", "wall"], default="auto",
                   help="CPU clock: auto = the thread's CPU time with one thread (robust to other "
                        "processes sharing the machine), else wall time (default %(default)s)")
    b.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="CPU: time a fixed reference conv around each stretch of runs and report ops "
                        "at the machine's nominal speed, so a shared VM's speed swings cancel out "
                        "(default: on for CPU, off for CUDA)")
    b.add_argument("--channel-step", type=positive_int, default=None,
                   help="measure only multiples of this many channels plus each range's ends, and "
                        "interpolate between them (default: every channel count the space allows)")
    b.add_argument("--warmup", type=positive_int, default=3, help="untimed runs per op (default %(default)s)")
    b.add_argument("--runs", type=positive_int, default=10, help="timed runs per op (default %(default)s)")
    b.add_argument("--max-ops", type=positive_int, default=None,
                   help="stop after this many new ops (the table stays resumable)")
    b.add_argument("--shard", metavar="I/N", default=None,
                   help="measure only shard I of N of the grid (1 <= I <= N), split by estimated time; "
                        "build the N shards on identical boards and join them with `latency merge`")
    b.add_argument("--dry-run", action="store_true", help="print the grid's size and exit")
    b.add_argument("--note", default="", help="free text stored in the sidecar (e.g. how the machine was loaded)")
    b.set_defaults(func=run_build)


def _register_merge(lsub) -> None:
    m = lsub.add_parser("merge", help="join shards built on identical boards into one table",
                        description=MERGE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("shards", metavar="SHARD", nargs="+", help="shard tables (CSV; sidecars beside them)")
    m.add_argument("--out", required=True, help="table to write (CSV + .json sidecar)")
    m.add_argument("--force", action="store_true", help="replace --out if it exists")
    m.add_argument("--allow-partial", action="store_true",
                   help="merge even if shards are missing or unfinished: the table is marked incomplete, "
                        "what is missing recorded; `latency build` with the same spaces and --out measures it")
    m.add_argument("--max-nominal-ratio", type=float, default=1.25,
                   help="calibrated shards whose nominal reference times differ more than this are "
                        "refused as not identical boards (default %(default)s)")
    m.set_defaults(func=run_merge)


def _register_predict(lsub) -> None:
    pr = lsub.add_parser("predict", help="predicted latency of an architecture, per block and in total")
    pr.add_argument("arch", metavar="ARCH", help="architecture file or shipped name (e.g. damoyolo-t); with "
                                                 "--detector a model recipe, or a checkpoint (.pt)")
    pr.add_argument("--detector", action="store_true",
                    help="price the whole detector (backbone, neck, head; fused) of a model recipe or checkpoint "
                         "at --resolution, the image size")
    old_spellings(pr, pr.add_argument("--latency-db", default=DEFAULT_DB,
                                      help="latency table path or shipped name (default %(default)s)"), "--db")
    pr.add_argument("--resolution", type=positive_int, default=320, help="input size (default %(default)s)")
    pr.add_argument("--in-channels", type=positive_int, default=None,
                    help="override the stem's input channels (12 = the searched view of a Focus stem)")
    pr.set_defaults(func=run_predict)


def _register_validate(lsub) -> None:
    v = lsub.add_parser("validate", help="measure random architectures end to end and score the table")
    old_spellings(v, v.add_argument("--latency-db", default=DEFAULT_DB,
                                    help="latency table path or shipped name (default %(default)s)"), "--db")
    v.add_argument("--space", help="search space file or shipped name (random backbones of it are timed)")
    v.add_argument("--models", nargs="+", metavar="RECIPE",
                   help="instead of --space: these detectors (model recipes or shipped names), each priced from "
                        "its convolutions and timed end to end at --resolution (default 640)")
    v.add_argument("-n", type=positive_int, default=50, help="random architectures (default %(default)s)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random draw (default %(default)s)")
    v.add_argument("--resolution", type=positive_int, default=None, help="input size (default: the space's)")
    v.add_argument("--fit", default="affine",
                   help="correction fitted to the sum of ops: affine (scale + overhead, default), "
                        "offset (overhead only) or none")
    v.add_argument("--warmup", type=positive_int, default=3, help="untimed runs per network (default %(default)s)")
    v.add_argument("--runs", type=positive_int, default=10, help="timed runs per network (default %(default)s)")
    v.add_argument("--rounds", type=positive_int, default=3,
                   help="spread each network's runs over this many passes through the list "
                        "(evens out load bursts; default %(default)s)")
    v.add_argument("--out", default=None,
                   help="folder for measurements.csv (resumable), report.json and the plot; new, "
                        "empty, or an earlier validate's to resume it")
    v.add_argument("--force", action="store_true", help="write into an --out folder that holds other files")
    v.add_argument("--no-update", action="store_true", help="do not store the fit in the table's sidecar")
    v.add_argument("--runtime", default=None, type=str.lower,
                   help="time the networks in this runtime (default: the table's); another runtime than the "
                        "table's measures how well its ops predict there, and leaves the sidecar alone")
    v.set_defaults(func=run_validate)


def _register_import(lsub) -> None:
    im = lsub.add_parser("import-tinynas", help="convert a TinyNAS op-profiler table (conv_data.out*)")
    im.add_argument("source", metavar="FILE", help="TinyNAS table, e.g. conv_data.out.fp16")
    im.add_argument("--out", required=True, help="table to write (CSV + .json sidecar)")
    im.add_argument("--force", action="store_true", help="replace --out if it exists")
    old_spellings(im, im.add_argument("--batch-size", type=positive_int, default=None,
                                      help="batch to keep when the file mixes several"), "--batch")
    im.add_argument("--dtype", choices=["fp32", "fp16", "int8"], default=None,
                    help="default: fp16 when the file name says so, else fp32")
    im.add_argument("--device-name", default="NVIDIA V100", help="recorded in the sidecar (default %(default)s)")
    im.add_argument("--runtime", default="TensorRT", help="recorded in the sidecar (default %(default)s)")
    im.add_argument("--extrapolation", choices=["tinynas", "nearest", "none"], default="tinynas",
                    help="how ops are priced: tinynas = as TinyNAS's own predictor does (default); "
                         "nearest / none = interpolated, with the nearest measured op or an error "
                         "outside the measured shapes")
    im.set_defaults(func=run_import)


def _register_rehash(lsub) -> None:
    rh = lsub.add_parser("rehash", help="accept a table's CSV after an edit made on purpose (checks rows, "
                                        "records its sha256)",
                         description=REHASH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    rh.add_argument("table", metavar="TABLE", help="latency table path or shipped name")
    rh.add_argument("--rows", type=int, default=None, metavar="N",
                    help="the CSV's row count, when an edit added or removed rows (a count other than the "
                         "sidecar's is refused without it: the CSV may be another table's)")
    rh.set_defaults(func=run_rehash)


def _register_list(lsub) -> None:
    ls = lsub.add_parser("list", help="the shipped latency tables and yours: device, runtime, ops, validated "
                                      "error, and whether each was measured on this machine")
    ls.add_argument("tables", metavar="TABLE_OR_FOLDER", nargs="*",
                    help="more tables to list (a CSV with its sidecar, or a folder of them)")
    ls.set_defaults(func=run_list)


def run_list(args) -> int:
    rows, here_cpu = api.list_latency_tables(args.tables)
    cells = [[r["table"], r["device"], f"{r['runtime']} {r['runtime_version']}".strip(), r["threads"] or "-", r["dtype"],
              r["ops"] or "-", r["status"],
              f"{r['validated_mape_pct']:.1f}%" if r["validated_mape_pct"] is not None else "-", r["here"]] for r in rows]
    print(table(["table", "device", "runtime", "threads", "dtype", "ops", "status", "validated MAPE", "here"], cells))
    print(f"\nthis machine: {here_cpu}; here: measured on this CPU in the runtime version installed, or "
          "calibrated: fitted to it by `latency calibrate` (- for GPU tables)")
    return 0


def run_build(args) -> int:
    if args.dry_run:
        plan = api.plan_latency_build(args.space, args.model, args.resolution, args.channel_step, args.size,
                                      args.shard)
        line = f"{plan['ops']} ops in {plan['groups']} groups"
        if args.shard:
            index, count = plan["shard"]
            line += f"; shard {index}/{count}: {plan['shard_ops']} ops, {plan['share']:.1%} of the estimated time"
        print(line)
        return 0
    t = api.build_latency_table(args.space, args.out, models=args.model, device=args.device, dtype=args.dtype,
                                batch=args.batch_size, resolution=args.resolution, threads=args.threads,
                                channel_step=args.channel_step, warmup=args.warmup, runs=args.runs,
                                max_ops=args.max_ops, note=args.note, clock=args.clock, calibrate=args.calibrate,
                                shard=args.shard, runtime=args.runtime, model_size=args.size)
    shard = t.meta.get("shard")
    part = f" (shard {shard['index']}/{shard['count']} of a {shard['grid_ops']}-op grid)" if shard else ""
    print(f"{args.out}: {len(t)} ops{part}, {t.meta['status']}")
    return 0


def run_merge(args) -> int:
    t = api.merge_latency_shards(args.shards, args.out, allow_partial=args.allow_partial, force=args.force,
                                 max_nominal_ratio=args.max_nominal_ratio)
    merged = t.meta["merged"]
    line = f"{args.out}: {len(t)} ops from {len(merged['shards'])} of {merged['count']} shards, {t.meta['status']}"
    if t.meta["status"] != "complete":
        line += (f" ({merged['missing_ops']} ops missing; `tinynas latency build` with the same spaces, "
                 f"settings and --out {args.out} measures them)")
    print(line)
    return 0


def run_predict(args) -> int:
    if args.detector or args.arch.endswith(".pt"):
        return _predict_detector(args)
    p = api.predict_backbone_latency(args.arch, args.latency_db, args.resolution, args.in_channels)
    arch, total = p["arch"], p["total_ms"]
    if p["extrapolated"]:
        print(f"note: {p['extrapolated']} op(s) lie outside the table's measured shapes and "
              "were priced by their nearest measured op")
    rows = [[i, b.cls, b.in_channels, b.out_channels, b.stride, b.kernel,
             b.depth if b.kind.has_bottleneck else "-", b.bottleneck or "-", f"{ms:.4f}"]
            for i, (b, ms) in enumerate(zip(arch.blocks, p["blocks_ms"]))]
    rows.append(["", "overhead", "", "", "", "", "", "", f"{p['overhead_ms']:.4f}"])
    rows.append(["", "total", "", "", "", "", "", "", f"{total:.4f}"])
    print(table(["#", "class", "in", "out", "s", "k", "L", "btn", "ms/image"], rows))
    meta = p["meta"]
    print(f"{total:.4f} ms per image ({total * 1e-3:.3e} s) at {arch.in_channels}x{args.resolution}x"
          f"{args.resolution}, batch {p['batch']}, {meta.get('device_name', meta['device'])} "
          f"{meta['dtype']} [{p['table']}]")
    return 0


def _predict_detector(args) -> int:
    p = api.predict_detector_latency(args.arch, args.latency_db, args.resolution)
    meta = p["meta"]
    print(f"{p['total_ms']:.4f} ms per image ({p['total_ms'] * 1e-3:.3e} s): {p['recipe'].name or args.arch}, "
          f"{p['convs']} convolutions ({p['distinct']} distinct) at 3x{args.resolution}x{args.resolution}, fused, "
          f"batch {p['batch']}, {meta.get('device_name', meta['device'])} {meta['dtype']} "
          f"{meta.get('runtime', 'torch')} [{p['table']}]")
    return 0


def _validate_models(args) -> int:
    result = api.validate_detector_latency(args.latency_db, args.models, args.resolution or 640, fit=args.fit,
                                           warmup=args.warmup, runs=args.runs, rounds=args.rounds, out_dir=args.out,
                                           force=args.force, runtime=args.runtime)
    rows = [[name, f"{m:.3f}", f"{r:.3f}", f"{p:.3f}", f"{(p - m) / m * 100:+.1f}"]
            for name, m, r, p in zip(result.names, result.measured_ms, result.raw_ms, result.predicted_ms)]
    print(table(["model", "measured ms", "sum of convs", "predicted", "error %"], rows))
    m = result.metrics
    for label, key in (("sum of convs", "raw"), ("fitted (leave-one-out)", "fitted_leave_one_out")):
        e = m[key]
        print(f"{label}: MAPE {e['mape_pct']:.2f}%, max {e['max_ape_pct']:.2f}%, Kendall tau {e['kendall_tau']:.3f}")
    print(f"{len(args.models)} detectors at {m['size']}, {m['runtime']}; fit: scale {result.scale:.4f}, "
          f"overhead {result.overhead_ms:.4f} ms per image (not stored: it prices detectors, not backbones)")
    return 0


def run_validate(args) -> int:
    if args.models:
        return _validate_models(args)
    if not args.space:
        raise UserError("--space", "", "give a search space (random backbones) or --models (whole detectors)")
    space, result = api.validate_latency_table(args.latency_db, args.space, n=args.n, seed=args.seed,
                                               resolution=args.resolution, fit=args.fit, warmup=args.warmup,
                                               runs=args.runs, out_dir=args.out, update=not args.no_update,
                                               rounds=args.rounds, force=args.force, runtime=args.runtime)
    m = result.metrics
    rows = []
    for label, key in (("sum of ops", "raw"), ("fitted (in sample)", "fitted_in_sample"),
                       ("fitted (leave-one-out)", "fitted_leave_one_out")):
        e = m[key]
        rows.append([label, f"{e['mape_pct']:.2f}", f"{e['max_ape_pct']:.2f}", f"{e['within_10pct']:.0f}",
                     f"{e['kendall_tau']:.3f}"])
    print(table(["prediction", "MAPE %", "max %", "within 10% (%)", "Kendall tau"], rows))
    print(f"{m['n']} random {space.name} architectures at {m['resolution']}; measured "
          f"{m['measured_ms_range'][0]:.2f}-{m['measured_ms_range'][1]:.2f} ms/image; fit: scale "
          f"{result.scale:.4f}, overhead {result.overhead_ms:.4f} ms per batch"
          + ("" if args.no_update else " (stored in the sidecar)"))
    return 0


def run_import(args) -> int:
    t = api.import_tinynas_table(args.source, args.out, force=args.force, batch=args.batch_size, dtype=args.dtype,
                                 device_name=args.device_name, runtime=args.runtime,
                                 extrapolation=args.extrapolation)
    s = t.meta["import_stats"]
    print(f"{args.out}: {s['rows']} ops at batch {t.batch}, {t.dtype} ({s['failed_dropped']} failed "
          f"measurements dropped, {s['duplicates_merged']} repeats merged)")
    return 0


def run_rehash(args) -> int:
    t = api.rehash_latency_table(args.table, rows=args.rows)
    print(f"{t.path}: {len(t)} rows checked; sha256 {t.meta['sha256'][:16]}... recorded in its sidecar")
    return 0
