"""What a user can hand the detector commands that used to end in a traceback or in silent damage:
images too large to decode, sizes the network cannot take, outputs that already exist,
passes that cannot fit in memory, and checkpoints with flipped bytes."""

import json
import random
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from test_detect_io import CLASSES, checkpoint, tiny_model, tiny_recipe_doc  # noqa: F401 (a fixture)
from tinynas import memory
from tinynas.detect import footprint
from tinynas.checkpoint import load_checkpoint, save_checkpoint
from tinynas.cli import main
from tinynas.detect import parse_model_recipe
from tinynas.errors import UserError


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in lines if not line.startswith("predict:")]  # the progress bar
    assert len(lines) == 1, lines
    assert lines[0].startswith("tinynas: error: ")
    return lines[0]


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray((np.random.RandomState(0).rand(40, 56, 3) * 255).astype(np.uint8)).save(path)
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG that only declares its size: opening it reads no pixels, as a bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def predict_args(checkpoint, source, out, *extra):
    return ["predict", "--weights", str(checkpoint), "--source", str(source), "--out", str(out), "--size", "64",
            *extra]


# ------------------------------------------------------------------ images


def test_a_decompression_bomb_is_one_line_naming_the_file(checkpoint, tmp_path, capsys):
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(png_header(30000, 30000))
    assert main(predict_args(checkpoint, bomb, tmp_path / "out")) == 2
    line = one_error_line(capsys)
    assert f"{bomb}:" in line and "900 megapixels" in line and "150-megapixel limit" in line
    assert not (tmp_path / "out").exists()


def test_our_pixel_limit_applies_below_pil_s_own(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    path.write_bytes(png_header(12000, 13000))  # 156 MP: PIL would only warn
    with pytest.raises(UserError) as err:
        memory.image_size(path)
    assert err.value.source == str(path) and "12000 x 13000 = 156 megapixels" in err.value.reason
    monkeypatch.setattr(memory, "MAX_IMAGE_PIXELS", 12000 * 13000)
    assert memory.image_size(path) == (12000, 13000)


def test_truncated_and_foreign_files_are_user_errors(photo, tmp_path):
    truncated = tmp_path / "half.png"
    truncated.write_bytes(photo.read_bytes()[: len(photo.read_bytes()) // 2])
    memory.image_size(truncated)  # the header is intact
    with pytest.raises(UserError, match="unreadable image") as err:
        memory.read_rgb(truncated)
    assert err.value.source == str(truncated)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(UserError, match="not a format PIL can read"):
        memory.read_rgb(text)
    with pytest.raises(UserError, match="not found"):
        memory.read_rgb(tmp_path / "missing.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_damaged_images_either_decode_or_name_the_file(fmt, tmp_path):
    source = tmp_path / f"photo.{fmt.lower()}"
    Image.fromarray((np.random.RandomState(1).rand(48, 64, 3) * 255).astype(np.uint8)).save(source, format=fmt)
    data = source.read_bytes()
    rng = random.Random(7)
    refused = 0
    for trial in range(60):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        path = tmp_path / f"d{trial}.{fmt.lower()}"
        path.write_bytes(bytes(damaged))
        try:
            image = memory.read_rgb(path)
        except UserError as err:  # anything else escaping is the bug this guards against
            assert err.source == str(path)
            refused += 1
        else:
            assert image.mode == "RGB" and image.size == (64, 48)
    assert refused > 0


# ------------------------------------------------------------------ sizes


def test_export_and_model_info_refuse_sizes_off_the_stride(checkpoint, tmp_path, capsys):
    assert main(["export", "--weights", str(checkpoint), "--size", "33", "--out", str(tmp_path / "x.onnx")]) == 2
    line = one_error_line(capsys)
    assert line.startswith("tinynas: error: --size:") and "multiple of 32" in line and "got 33" in line
    assert not (tmp_path / "x.onnx").exists()
    assert main(["model", "info", "damoyolo-s", "--size", "33"]) == 2
    assert "multiple of 32" in one_error_line(capsys)


def test_the_stride_comes_from_the_detector(tmp_path, capsys):
    # Outputs at blocks 1..3 put the deepest level at stride 16, so 48 is a fine input size.
    doc = tiny_recipe_doc()
    doc["backbone"]["out_indices"] = [1, 2, 3]
    doc["head"]["strides"] = [4, 8, 16]
    path = tmp_path / "shallow.yaml"
    path.write_text(json.dumps(doc))
    assert main(["model", "info", str(path), "--size", "48"]) == 0
    assert "48x48 input" in capsys.readouterr().out
    assert main(["model", "info", str(path), "--size", "40"]) == 2
    assert "multiple of 16" in one_error_line(capsys)


# ------------------------------------------------------------------ outputs


def test_predict_into_a_file_is_refused(checkpoint, photo, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("mine")
    assert main(predict_args(checkpoint, photo, target)) == 2
    line = one_error_line(capsys)
    assert f"{target}: --out:" in line and "is a file" in line
    assert target.read_text() == "mine"


def test_predict_does_not_replace_results_without_force(checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(predict_args(checkpoint, photo, out)) == 0
    first = (out / "predictions.json").read_bytes()
    (out / "predictions.json").write_text("[]\n")
    capsys.readouterr()
    assert main(predict_args(checkpoint, photo, out)) == 2
    line = one_error_line(capsys)
    assert str(out / "predictions.json") in line and "--force" in line
    assert (out / "predictions.json").read_text() == "[]\n"
    assert main(predict_args(checkpoint, photo, out, "--force")) == 0
    assert (out / "predictions.json").read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == ["photo.png", "predictions.json"]  # no lock left


def test_predict_does_not_replace_a_drawn_image_of_the_same_name(checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.png").write_bytes(b"someone's picture")
    assert main(predict_args(checkpoint, photo, out)) == 2
    assert str(out / "photo.png") in one_error_line(capsys)
    assert (out / "photo.png").read_bytes() == b"someone's picture"
    assert main(predict_args(checkpoint, photo, out, "--no-draw")) == 0  # only the JSON is written


def test_two_inputs_drawn_to_one_name_are_refused(checkpoint, photo, tmp_path, capsys):
    Image.open(photo).save(photo.with_suffix(".tif"))
    assert main(predict_args(checkpoint, photo.parent, tmp_path / "out")) == 2
    assert "photo.png" in one_error_line(capsys)


def test_export_into_a_folder_or_over_a_file(checkpoint, tmp_path, capsys):
    pytest.importorskip("onnx")
    folder = tmp_path / "models"
    folder.mkdir()
    assert main(["export", "--weights", str(checkpoint), "--size", "64", "--out", str(folder)]) == 2
    line = one_error_line(capsys)
    assert f"{folder}: --out:" in line and "is a folder" in line
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["models", "tiny.pt"]
    existing = tmp_path / "tiny.onnx"  # the default name
    existing.write_bytes(b"older export")
    assert main(["export", "--weights", str(checkpoint), "--size", "64"]) == 2
    assert str(existing) in one_error_line(capsys)
    assert existing.read_bytes() == b"older export"
    assert main(["export", "--weights", str(checkpoint), "--size", "64", "--force"]) == 0
    assert existing.stat().st_size > 1000


# ------------------------------------------------------------------ memory


def test_predict_refuses_a_size_that_cannot_fit(checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "out"
    args = predict_args(checkpoint, photo, out)
    args[args.index("--size") + 1] = str(32 * 200_000)
    assert main(args) == 2
    line = one_error_line(capsys)
    assert line.startswith("tinynas: error: --size:") and "needs ~" in line and "available" in line
    assert "PiB" in line and not out.exists()


def test_detector_estimate_tracks_a_real_forward_pass(tmp_path):
    """The meta-device replay against the resident memory a real forward pass adds."""
    recipe = parse_model_recipe(tiny_recipe_doc(), "tiny")
    size, batch = 512, 8
    estimate = footprint.detector_bytes(recipe, size, batch)
    script = (
        "import torch\n"
        "from test_detect_io import tiny_recipe_doc\n"
        "from tinynas.detect import build_detector, parse_model_recipe\n"
        "model = build_detector(parse_model_recipe(tiny_recipe_doc(), 'tiny')).eval()\n"
        "with torch.no_grad(): model(torch.zeros(1, 3, 64, 64))\n"  # warm up kernels and allocator
        f"images = torch.zeros({batch}, 3, {size}, {size})\n"
        "status = lambda key: int(open('/proc/self/status').read().split(key + ':')[1].split()[0]) * 1024\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"  # the peak so far (imports) must not count
        "before = status('VmRSS')\n"
        "with torch.no_grad(): model(images)\n"
        "print(status('VmHWM') - before)\n")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/status")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=str(tmp_path), env={"PYTHONPATH": ":".join(sys.path), "OMP_NUM_THREADS": "1"})
    if run.returncode and "clear_refs" in run.stderr:
        pytest.skip("this kernel cannot reset the peak resident size")
    assert run.returncode == 0, run.stderr
    measured = int(run.stdout.split()[-1])
    weights_and_images = sum(p.numel() * 4 for p in tiny_model().state_dict().values()) + batch * 3 * size * size * 4
    activations = estimate - weights_and_images
    assert 0.6 * measured <= activations <= 1.6 * measured, (activations, measured)


def test_training_estimate_adds_gradients_and_optimizer_state(monkeypatch):
    recipe = parse_model_recipe(tiny_recipe_doc(), "tiny")
    params = sum(p.numel() * 4 for p in tiny_model().parameters())
    inference = footprint.detector_bytes(recipe, 128, 2)
    training = footprint.detector_bytes(recipe, 128, 2, training=True)
    assert training > inference + (footprint.TRAINING_STATE_COPIES + 1) * params  # + gradients + saved activations
    assert footprint.detector_bytes(recipe, 128, 2, training=True, amp=True) < training
    monkeypatch.setattr(memory, "available_memory", lambda device=None: (inference + training) // 2)
    assert footprint.check_detector_fits(recipe, 128, 2) == inference
    with pytest.raises(UserError) as err:
        footprint.check_detector_fits(recipe, 128, 2, training=True, source="recipe.yaml", field="train.batch_size")
    assert (err.value.source, err.value.field) == ("recipe.yaml", "train.batch_size")
    assert f"~{memory.format_bytes(training)}" in err.value.reason


def test_available_memory_reads_meminfo_and_the_cgroup_limit(tmp_path):
    assert memory._meminfo_available("MemTotal: 100 kB\nMemAvailable:    2048 kB\n") == 2 * 1024 * 1024
    assert memory._meminfo_available("MemTotal: 100 kB\n") is None
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("5000\n")
    assert memory._cgroup_headroom(tmp_path) is None
    (tmp_path / "memory.max").write_text("8000\n")
    assert memory._cgroup_headroom(tmp_path) == 3000
    assert memory._cgroup_headroom(tmp_path / "nothing") is None
    found = memory.available_memory()
    assert found is None or found > 0
    assert memory.format_bytes(745 * 2**30) == "745 GiB" and memory.format_bytes(21.3 * 2**30) == "21.3 GiB"


# ------------------------------------------------------------------ checkpoints


def _records(path):
    """(name, first byte, length) of each zip record's data."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
            yield info.filename, info.header_offset + 30 + name_len + extra_len, info.file_size


def _flipped(path, offsets, out):
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset] ^= 0x5A
    out.write_bytes(bytes(data))
    return out


def test_flipped_tensor_bytes_are_caught_though_torch_loads_them(checkpoint, tmp_path):
    tensors = [(start, size) for name, start, size in _records(checkpoint) if "/data/" in name and size > 8]
    assert len(tensors) > 50
    for i, (start, size) in enumerate(tensors[::5]):
        damaged = _flipped(checkpoint, [start + size // 2], tmp_path / f"t{i}.pt")
        torch.load(damaged, weights_only=True)  # torch alone does not notice
        with pytest.raises(UserError) as err:
            load_checkpoint(damaged)
        assert err.value.source == str(damaged) and err.value.field == "sha256"


def test_flips_in_the_metadata_and_the_zip_are_caught(checkpoint, tmp_path):
    raw = checkpoint.read_bytes()
    pkl_start, pkl_size = next((start, size) for name, start, size in _records(checkpoint) if name.endswith("data.pkl"))
    stored_hash = load_checkpoint(checkpoint)  # loads clean
    assert stored_hash.class_names == CLASSES
    targets = {
        "class name": raw.index(b"kite", pkl_start),
        "hash value": raw.index(b"sha256", pkl_start) + 12,
        "hash key": raw.index(b"sha256", pkl_start) + 2,
        "format": raw.index(b"tinynas-detector", pkl_start) + 3,
        "pickle start": pkl_start,
        "pickle end": pkl_start + pkl_size - 1,
        "central directory": raw.rindex(b"PK\x01\x02") + 1,
        "end record": raw.rindex(b"PK\x05\x06") + 2,
    }
    for what, offset in targets.items():
        damaged = _flipped(checkpoint, [offset], tmp_path / "m.pt")
        with pytest.raises(UserError) as err:
            load_checkpoint(damaged)
        assert err.value.source == str(damaged), what
    (tmp_path / "short.pt").write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(UserError):
        load_checkpoint(tmp_path / "short.pt")


def test_random_flips_never_load_different_content(checkpoint, tmp_path):
    original = load_checkpoint(checkpoint)
    size = checkpoint.stat().st_size
    rng = random.Random(11)
    caught = 0
    for trial in range(40):
        damaged = _flipped(checkpoint, [rng.randrange(size)], tmp_path / f"r{trial}.pt")
        try:
            loaded = load_checkpoint(damaged)
        except UserError as err:
            assert err.source == str(damaged)
            caught += 1
            continue
        # A flip in zip padding or an unused header field changes nothing; it must be that.
        assert loaded.class_names == original.class_names and loaded.recipe == original.recipe
        assert loaded.state_dict.keys() == original.state_dict.keys()
        assert all(torch.equal(loaded.state_dict[k], v) for k, v in original.state_dict.items())
    assert caught >= 30


def test_predict_with_damaged_weights_exits_2(checkpoint, photo, tmp_path, capsys):
    start, size = max(((s, n) for name, s, n in _records(checkpoint) if "/data/" in name), key=lambda r: r[1])
    damaged = _flipped(checkpoint, range(start, start + min(2000, size)), tmp_path / "damaged.pt")
    assert main(predict_args(damaged, photo, tmp_path / "out")) == 2
    line = one_error_line(capsys)
    assert f"{damaged}: sha256:" in line and "damaged" in line
    assert not (tmp_path / "out").exists()


def test_checkpoints_without_a_hash_still_load_and_extra_is_covered(tmp_path):
    path = tmp_path / "with_extra.pt"
    state = {"step": torch.arange(6, dtype=torch.int64).reshape(2, 3), "betas": (0.9, 0.999), "nested": [{1: None}]}
    save_checkpoint(path, tiny_model(), CLASSES, extra={"epoch": 4, "optimizer": state})
    doc = torch.load(path, weights_only=True)
    assert len(doc["sha256"]) == 64
    doc["extra"]["epoch"] = 5  # a changed extra is a changed checkpoint
    torch.save(doc, tmp_path / "edited.pt")
    with pytest.raises(UserError, match="does not match its hash"):
        load_checkpoint(tmp_path / "edited.pt")
    del doc["sha256"]  # as written before checkpoints were hashed
    torch.save(doc, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    assert old.extra["epoch"] == 5 and torch.equal(old.extra["optimizer"]["step"], state["step"])
