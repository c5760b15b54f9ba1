"""Distillation end to end: a CSP teacher teaching a Res student, and a chain that resumes."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tinynas.checkpoint import load_checkpoint
from tinynas.train.run import TrainRun
from tinynas.cli import main
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.run_files import MetricsLog
from tinynas.api import train_detector as train

from conftest import ROOT
from train_helpers import synthetic, tiny_recipe, write_recipe

WIDE_ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 16, "s": 1, "k": 3},
    {"class": "SuperResKXKX", "in": 16, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResKXKX", "in": 32, "out": 64, "s": 2, "k": 3, "L": 1, "btn": 32},
    {"class": "SuperResKXKX", "in": 64, "out": 96, "s": 2, "k": 3, "L": 1, "btn": 48},
    {"class": "SuperResKXKX", "in": 96, "out": 96, "s": 1, "k": 3, "L": 1, "btn": 48},
    {"class": "SuperResKXKX", "in": 96, "out": 192, "s": 2, "k": 3, "L": 1, "btn": 96},
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("distill"), images=16, val_images=4, size=64, seed=2)


def csp_teacher(data, out):
    doc = tiny_recipe(data, out, 64, epochs=1, batch_size=8)
    doc["name"] = "teacher"
    doc["backbone"].update(arch=WIDE_ARCH, wrap="csp", act="silu")
    doc["backbone"].pop("out_indices")
    doc["neck"].update(out_channels=[48, 96, 192], act="silu")
    return doc


def test_csp_teacher_distils_res_student_end_to_end(data, tmp_path, capsys):
    train(parse_train_recipe(csp_teacher(data, tmp_path / "teacher")), progress=False)
    teacher_ckpt = tmp_path / "teacher" / "last.pt"
    teacher_before = {k: v.clone() for k, v in load_checkpoint(teacher_ckpt).state_dict.items()}

    student = write_recipe(tmp_path / "student.yaml", tiny_recipe(data, tmp_path / "student", 64, epochs=1, batch_size=8))
    assert main(["train", str(student), "--teacher", str(teacher_ckpt), "distill.method=cwd", "--quiet"]) == 0
    capsys.readouterr()
    row = MetricsLog(tmp_path / "student" / "metrics.csv").rows()[-1]
    assert float(row["distill"]) > 0
    extra = load_checkpoint(tmp_path / "student" / "last.pt").extra
    # the align convs map the student's neck widths (32/64/128) to the teacher's (48/96/192)
    assert extra["distiller"]["align.0.weight"].shape == (48, 32, 1, 1)
    # the teacher file is untouched by the student's training
    for k, v in load_checkpoint(teacher_ckpt).state_dict.items():
        assert torch.equal(v, teacher_before[k])


def test_self_distillation_runs(data, tmp_path):
    train(parse_train_recipe(tiny_recipe(data, tmp_path / "t", 64, epochs=1, batch_size=8)), progress=False)
    doc = tiny_recipe(data, tmp_path / "s", 64, epochs=1, batch_size=8)
    doc["distill"] = {"teacher": str(tmp_path / "t" / "last.pt"), "method": "self"}
    train(parse_train_recipe(doc), progress=False)
    assert float(MetricsLog(tmp_path / "s" / "metrics.csv").rows()[-1]["distill"]) > 0


def test_logit_distillation_from_a_heterogeneous_teacher(data, tmp_path, capsys):
    # A CSP teacher of other widths and activation teaches through its head outputs.
    train(parse_train_recipe(csp_teacher(data, tmp_path / "teacher")), progress=False)
    teacher = str(tmp_path / "teacher" / "last.pt")
    doc = tiny_recipe(data, tmp_path / "s", 64, epochs=1, batch_size=8)
    doc["distill"] = {"teacher": teacher, "method": "logit"}
    train(parse_train_recipe(doc), progress=False)
    assert float(MetricsLog(tmp_path / "s" / "metrics.csv").rows()[-1]["distill"]) > 0
    assert "distiller" not in load_checkpoint(tmp_path / "s" / "last.pt").extra  # no align convs needed

    doc["head"]["reg_max"] = 8  # other box bins: the head outputs cannot be compared
    recipe = write_recipe(tmp_path / "s8.yaml", dict(doc, out=str(tmp_path / "s8")))
    code = main(["train", str(recipe), "--teacher", teacher, "distill.method=logit", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "head.reg_max" in err and "teacher has 16" in err and len(_error_lines(err)) == 1


def _error_lines(err: str) -> list[str]:
    """stderr without the one line that reports the training values chosen automatically."""
    return [line for line in err.splitlines() if ": auto: " not in line]


def test_distillation_size_mismatch_is_a_clear_error(data, tmp_path, capsys):
    train(parse_train_recipe(tiny_recipe(data, tmp_path / "t", 64, epochs=1, batch_size=8)), progress=False)
    doc = tiny_recipe(data, tmp_path / "s", 64, epochs=1, batch_size=8)
    doc["backbone"]["out_indices"] = [1, 2, 4]  # strides 4, 8, 16: not the teacher's 8, 16, 32
    doc["head"]["strides"] = [4, 8, 16]
    recipe = write_recipe(tmp_path / "s.yaml", doc)
    code = main(["train", str(recipe), "--teacher", str(tmp_path / "t" / "last.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "differ in size" in err and "same input size and strides" in err
    assert len(_error_lines(err)) == 1


def _chain(data, tmp_path):
    stage = tiny_recipe(data, tmp_path / "unused", 64, epochs=2, batch_size=8)
    stage.pop("out")
    large = dict(stage, name="L", neck={**stage["neck"], "out_channels": [48, 96, 192]})
    write_recipe(tmp_path / "large.yaml", large)
    write_recipe(tmp_path / "medium.yaml", dict(stage, name="M"))
    chain = {"name": "lm", "out": str(tmp_path / "chain"), "baseline": True,
             "distill": {"method": "cwd"},
             "stages": [{"name": "L", "recipe": "large.yaml"}, {"name": "M", "recipe": "medium.yaml"}]}
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(chain))
    return path


def test_chain_killed_in_stage_two_resumes_and_skips_stage_one(data, tmp_path, capsys):
    chain = _chain(data, tmp_path)
    out = tmp_path / "chain"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tinynas", "distill-chain", str(chain), "--quiet"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    # Stage 2 begins with its plain baseline; kill as soon as that run folder exists.
    while not (out / "M-plain" / "recipe.yaml").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stage_one = out / "L" / "last.pt"
    assert stage_one.is_file()
    stamp = stage_one.stat().st_mtime_ns

    assert main(["distill-chain", str(chain), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert stage_one.stat().st_mtime_ns == stamp  # stage 1 skipped, not retrained
    for run in ("M", "M-plain"):
        assert load_checkpoint(out / run / "last.pt").extra["epoch"] == 2
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("stage,teacher,params_M,GFLOPs")
    assert [line.split(",")[0] for line in summary[1:]] == ["L", "M"]
    assert "| M | L |" in printed
    # Each training is counted (L, M's baseline, M: 3), and the summary's AP is the best epoch's.
    assert f"model 1/3: {out / 'L'}: finished earlier, skipped" in printed
    assert f"model 2/3: {out / 'M-plain'}: " in printed and f"model 3/3: {out / 'M'}: training" in printed
    # Once a training was timed here, each next one says about how long the chain has left.
    assert f"model 2/3: {out / 'M-plain'}: training\n" in printed  # nothing timed yet: L was skipped
    assert re.search(rf"model 3/3: {re.escape(str(out / 'M'))}: training \((about \d+ min|under a minute) left\)",
                     printed)
    columns = summary[0].split(",")
    for line in summary[1:]:
        row = dict(zip(columns, line.split(",")))
        assert float(row["AP"]) == pytest.approx(TrainRun(out / row["stage"]).best_metrics()["AP"], rel=1e-3)
