"""``tinynas latency build|merge|predict|validate|import-tinynas|rehash|time``: per-chip latency tables."""

from __future__ import annotations

import argparse

from .. import api
from ..errors import UserError
from .format import table
from .settings_flags import Flag, add_settings, given_settings, read_settings


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


BUILD_FLAGS = (
    Flag("space", metavar="SPACE", text=True, many="append"), Flag("model", metavar="RECIPE", text=True, many="append"),
    Flag("size", old=("--model-size",)), Flag("out", metavar="TABLE.csv", text=True), Flag("device", text=True),
    Flag("dtype"), Flag("runtime", text=True), Flag("batch_size", old=("--batch",)), Flag("resolution"),
    Flag("threads"), Flag("clock", text=True), Flag("calibrate"),
    Flag("calibrate", spelling="--no-calibrate", negate=True, help="time ops as they run, without the reference "
                                                                 "conv (calibrate=false)"),
    Flag("channel_step"), Flag("warmup"), Flag("runs"), Flag("max_ops"), Flag("shard", metavar="I/N", text=True),
    Flag("dry_run"), Flag("note", text=True),
)
PREDICT_FLAGS = (Flag("detector"), Flag("latency_db", metavar="TABLE", old=("--db",), text=True), Flag("resolution"),
                 Flag("size"), Flag("in_channels"))
VALIDATE_FLAGS = (
    Flag("latency_db", metavar="TABLE", old=("--db",), text=True), Flag("space", metavar="SPACE", text=True),
    Flag("models", metavar="RECIPE", text=True, many="+"), Flag("n", spelling="-n"), Flag("seed"), Flag("resolution"),
    Flag("size"),
    Flag("fit"), Flag("warmup"), Flag("runs"), Flag("rounds"), Flag("out", metavar="DIR", text=True), Flag("force"),
    Flag("update", spelling="--no-update", negate=True, help="do not store the fit in the table's sidecar "
                                                             "(update=false)"),
    Flag("runtime", text=True),
)

MERGE_FLAGS = (Flag("out", metavar="TABLE.csv", text=True), Flag("force"), Flag("allow_partial"),
               Flag("max_nominal_ratio", metavar="RATIO"))
IMPORT_FLAGS = (Flag("out", metavar="TABLE.csv", text=True), Flag("force"), Flag("batch_size", old=("--batch",)),
                Flag("dtype"), Flag("device_name", text=True), Flag("runtime", text=True), Flag("extrapolation"))
REHASH_FLAGS = (Flag("rows"),)


def _register_build(lsub) -> None:
    b = lsub.add_parser("build", help="measure a space's convolutions into a latency table",
                        description=BUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings(b, api.LatencyBuildSettings, BUILD_FLAGS, "runs=5 channel_step=32")
    b.set_defaults(func=run_build)


def _register_merge(lsub) -> None:
    m = lsub.add_parser("merge", help="join shards built on identical boards into one table",
                        description=MERGE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("shards", metavar="SHARD", nargs="+", help="shard tables (CSV; sidecars beside them)")
    add_settings(m, api.LatencyMergeSettings, MERGE_FLAGS, "allow_partial=true", words_in="shards")
    m.set_defaults(func=run_merge)


def _register_predict(lsub) -> None:
    pr = lsub.add_parser("predict", help="predicted latency of an architecture, per block and in total")
    pr.add_argument("arch", metavar="ARCH", help="architecture file or shipped name (e.g. damoyolo-t); with "
                                                 "--detector a model recipe, or a checkpoint (.pt)")
    add_settings(pr, api.LatencyPredictSettings, PREDICT_FLAGS, "resolution=640 latency_db=cpu-ort-fp32")
    pr.set_defaults(func=run_predict)


def _register_validate(lsub) -> None:
    v = lsub.add_parser("validate", help="measure random architectures end to end and score the table")
    add_settings(v, api.LatencyValidateSettings, VALIDATE_FLAGS, "n=20 runs=5")
    v.set_defaults(func=run_validate)


def _register_import(lsub) -> None:
    im = lsub.add_parser("import-tinynas", help="convert a TinyNAS op-profiler table (conv_data.out*)")
    im.add_argument("source", metavar="FILE", help="TinyNAS table, e.g. conv_data.out.fp16")
    add_settings(im, api.LatencyImportSettings, IMPORT_FLAGS, "dtype=fp16 extrapolation=nearest")
    im.set_defaults(func=run_import)


def _register_rehash(lsub) -> None:
    rh = lsub.add_parser("rehash", help="accept a table's CSV after an edit made on purpose (checks rows, "
                                        "records its sha256)",
                         description=REHASH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    rh.add_argument("table", metavar="TABLE", help="latency table path or shipped name")
    add_settings(rh, api.LatencyRehashSettings, REHASH_FLAGS, "rows=1200")
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
    settings = read_settings(api.LatencyBuildSettings, given_settings(args, BUILD_FLAGS), BUILD_FLAGS)
    if settings.dry_run:
        plan = api.build_with(settings)
        line = f"{plan['ops']} ops in {plan['groups']} groups"
        if settings.shard:
            index, count = plan["shard"]
            line += f"; shard {index}/{count}: {plan['shard_ops']} ops, {plan['share']:.1%} of the estimated time"
        print(line)
        return 0
    t = api.build_with(settings)
    shard = t.meta.get("shard")
    part = f" (shard {shard['index']}/{shard['count']} of a {shard['grid_ops']}-op grid)" if shard else ""
    print(f"{settings.out}: {len(t)} ops{part}, {t.meta['status']}")
    return 0


def run_merge(args) -> int:
    settings = read_settings(api.LatencyMergeSettings, given_settings(args, MERGE_FLAGS), MERGE_FLAGS)
    if not args.shards:
        raise UserError("SHARD", "", "name the shard tables to merge")
    t = api.merge_with(args.shards, settings)
    merged = t.meta["merged"]
    line = f"{settings.out}: {len(t)} ops from {len(merged['shards'])} of {merged['count']} shards, {t.meta['status']}"
    if t.meta["status"] != "complete":
        line += (f" ({merged['missing_ops']} ops missing; `tinynas latency build` with the same spaces, "
                 f"settings and --out {settings.out} measures them)")
    print(line)
    return 0


def run_predict(args) -> int:
    settings = read_settings(api.LatencyPredictSettings, given_settings(args, PREDICT_FLAGS), PREDICT_FLAGS)
    if settings.detector or args.arch.endswith(".pt"):
        return _predict_detector(args.arch, settings)
    p = api.predict_backbone_latency(args.arch, settings.latency_db, settings.resolution, settings.in_channels)
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
    print(f"{total:.4f} ms per image ({total * 1e-3:.3e} s) at {arch.in_channels}x{settings.resolution}x"
          f"{settings.resolution}, batch {p['batch']}, {meta.get('device_name', meta['device'])} "
          f"{meta['dtype']} [{p['table']}]")
    return 0


def _predict_detector(model: str, settings) -> int:
    size = settings.size or settings.resolution
    p = api.predict_detector_latency(model, settings.latency_db, size)
    meta = p["meta"]
    print(f"{p['total_ms']:.4f} ms per image ({p['total_ms'] * 1e-3:.3e} s): {p['recipe'].name or model}, "
          f"{p['convs']} convolutions ({p['distinct']} distinct) at 3x{size}x{size}, fused, "
          f"batch {p['batch']}, {meta.get('device_name', meta['device'])} {meta['dtype']} "
          f"{meta.get('runtime', 'torch')} [{p['table']}]")
    return 0


def _validate_models(s) -> int:
    result = api.validate_detector_latency(s.latency_db, s.models, s.size or s.resolution or 640, fit=s.fit,
                                           warmup=s.warmup,
                                           runs=s.runs, rounds=s.rounds, out_dir=s.out or None, force=s.force,
                                           runtime=s.runtime.lower() or None)
    rows = [[name, f"{m:.3f}", f"{r:.3f}", f"{p:.3f}", f"{(p - m) / m * 100:+.1f}"]
            for name, m, r, p in zip(result.names, result.measured_ms, result.raw_ms, result.predicted_ms)]
    print(table(["model", "measured ms", "sum of convs", "predicted", "error %"], rows))
    m = result.metrics
    for label, key in (("sum of convs", "raw"), ("fitted (leave-one-out)", "fitted_leave_one_out")):
        e = m[key]
        print(f"{label}: MAPE {e['mape_pct']:.2f}%, max {e['max_ape_pct']:.2f}%, Kendall tau {e['kendall_tau']:.3f}")
    print(f"{len(s.models)} detectors at {m['size']}, {m['runtime']}; fit: scale {result.scale:.4f}, "
          f"overhead {result.overhead_ms:.4f} ms per image (not stored: it prices detectors, not backbones)")
    return 0


def run_validate(args) -> int:
    s = read_settings(api.LatencyValidateSettings, given_settings(args, VALIDATE_FLAGS), VALIDATE_FLAGS)
    if s.models:
        return _validate_models(s)
    if not s.space:
        raise UserError("--space", "", "give a search space (random backbones) or --models (whole detectors)")
    space, result = api.validate_latency_table(s.latency_db, s.space, n=s.n, seed=s.seed, resolution=s.resolution,
                                               fit=s.fit, warmup=s.warmup, runs=s.runs, out_dir=s.out or None,
                                               update=s.update, rounds=s.rounds, force=s.force,
                                               runtime=s.runtime.lower() or None)
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
          + (" (stored in the sidecar)" if s.update else ""))
    return 0


def run_import(args) -> int:
    settings = read_settings(api.LatencyImportSettings, given_settings(args, IMPORT_FLAGS), IMPORT_FLAGS)
    t = api.import_with(args.source, settings)
    s = t.meta["import_stats"]
    print(f"{settings.out}: {s['rows']} ops at batch {t.batch}, {t.dtype} ({s['failed_dropped']} failed "
          f"measurements dropped, {s['duplicates_merged']} repeats merged)")
    return 0


def run_rehash(args) -> int:
    settings = read_settings(api.LatencyRehashSettings, given_settings(args, REHASH_FLAGS), REHASH_FLAGS)
    t = api.rehash_with(args.table, settings)
    print(f"{t.path}: {len(t)} rows checked; sha256 {t.meta['sha256'][:16]}... recorded in its sidecar")
    return 0
