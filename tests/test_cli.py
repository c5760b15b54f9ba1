"""The command line: info, score, convert, and one-line errors with exit code 2."""

import json
import math
import subprocess
import sys

import pytest

from conftest import DAMOYOLO, ROOT
from tinynas import load_arch
from tinynas.api import arch_report, load_any_arch
from tinynas.cli import main

GOOD = [
    {"class": "ConvKXBNRELU", "in": 12, "out": 16, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 16, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 16},
]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_score_orders_damoyolo_t_s_m_l(capsys):
    scores = []
    for name in DAMOYOLO:
        code, out, _ = run(capsys, "score", f"damoyolo-{name}")
        assert code == 0
        scores.append(float(out.split()[0]))
    assert all(math.isfinite(s) for s in scores)
    assert scores == sorted(scores) and len(set(scores)) == 4


def test_score_entropy_and_stage_breakdown(capsys):
    code, out, _ = run(capsys, "score", "damoyolo-t", "--method", "entropy", "--resolution", "64",
                       "--batch-size", "2", "--seed", "1", "--stage-weights", "0,0,1,1,16", "--stages")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 6 and lines[-1].endswith("x 16")
    total = float(lines[0])
    stages = [float(l.split(":")[1].split("x")[0]) for l in lines[1:]]
    assert total == pytest.approx(stages[2] + stages[3] + 16 * stages[4], rel=1e-5)


def test_info_prints_each_block_and_totals(capsys):
    code, out, _ = run(capsys, "info", "damoyolo-s", "--resolution", "320")
    assert code == 0
    report = arch_report(load_any_arch("damoyolo-s"), 320)
    lines = out.splitlines()
    assert len([l for l in lines if l.split() and l.split()[0].isdigit()]) == 6
    assert "total" in out and "25 layers" in out
    assert f"{report['score']:.4f}" in out
    # the stage column marks exactly the blocks that close a stage
    assert [r["stage"] for r in report["blocks"]] == [0, 1, 2, None, 3, 4]


def test_convert_writes_damoyolo_text(capsys, tmp_path):
    out_file = tmp_path / "s.txt"
    code, _, _ = run(capsys, "convert", "damoyolo-s", out_file)
    assert code == 0
    assert "SuperResConvK1KX" in out_file.read_text()
    assert load_arch(out_file) == load_any_arch("damoyolo-s")
    yaml_file = tmp_path / "s.yaml"
    assert run(capsys, "convert", out_file, yaml_file)[0] == 0
    assert load_arch(yaml_file) == load_any_arch("damoyolo-s")


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _blocks(change):
    blocks = [dict(b) for b in GOOD]
    blocks[1].update(change)
    return json.dumps({"blocks": blocks})


@pytest.mark.parametrize("name, text, field", [
    ("a.yaml", "blocks: [\n  {class: ConvKXBNRELU", "line"),
    ("a.json", "{\"blocks\": [1, 2", "line 1"),
    ("a.txt", "[{'class': 'ConvKXBNRELU'} + 1]", "structure"),
    ("a.json", _blocks({"class": "SuperResWide"}), "blocks[1].class"),
    ("a.json", _blocks({"in": 24}), "blocks[1].in"),
    ("a.json", _blocks({"s": 3}), "blocks[1].s"),
    ("a.json", _blocks({"k": 2}), "blocks[1].k"),
    ("a.json", _blocks({"out": -8}), "blocks[1].out"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, name, text, field):
    path = _write(tmp_path, name, text)
    for command in ("info", "score"):
        code, out, err = run(capsys, command, path)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and str(path) in err and field in err
        assert "Traceback" not in err


def test_missing_file_exits_2_from_the_installed_command(tmp_path):
    missing = tmp_path / "missing.yaml"
    proc = subprocess.run([sys.executable, "-m", "tinynas", "info", str(missing)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"tinynas: error: {missing}: no such file, nor a shipped architecture of that name " \
        "(damoyolo-l, damoyolo-m, damoyolo-nano-l, damoyolo-nano-m, damoyolo-nano-s, damoyolo-s, damoyolo-t, tinynas-n, " \
        "yolov6-n, yolov6-s, yolox-s)"


def test_wrong_number_of_weights_is_a_user_error(capsys):
    code, _, err = run(capsys, "score", "damoyolo-t", "--stage-weights", "1,2,3")
    assert code == 2 and "3 stage weights given but the architecture has 5 stages" in err
    code, _, err = run(capsys, "score", "damoyolo-t", "--stage-weights", "1,x")
    assert code == 2 and "weights" in err
