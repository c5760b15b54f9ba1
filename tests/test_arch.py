"""Architecture values: parsing every accepted format, writing them back, and rejecting bad input."""

import json

import pytest

from conftest import DAMOYOLO, arch_path
from tinynas import UserError, load_arch, save_arch
from tinynas.arch import BLOCK_KINDS, K1KX, KXKX, Arch, BlockSpec, arch_from_dicts
from tinynas.archio import format_structure_text, parse_arch, parse_structure_text

TINY = [
    {"class": "ConvKXBNRELU", "in": 12, "out": 16, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 16, "out": 32, "s": 2, "k": 3, "L": 2, "btn": 16},
    {"class": "SuperResK1KX", "in": 32, "out": 32, "s": 1, "k": 5, "L": 1, "btn": 24},
]


@pytest.mark.parametrize("name", [f"damoyolo-{n}" for n in DAMOYOLO] + ["damoyolo-nano-s", "damoyolo-nano-m", "damoyolo-nano-l"])
def test_damoyolo_structures_parse_and_round_trip(name, tmp_path):
    arch = load_arch(arch_path(name))
    raw = parse_structure_text(arch_path(name).read_text())
    assert raw == arch
    # DAMO-YOLO's file spells K1KX/KXKX its own way; we map both families to one class.
    assert {b.cls for b in arch.blocks[1:]} <= {K1KX, KXKX}
    for suffix in (".yaml", ".json", ".txt"):
        out = tmp_path / f"a{suffix}"
        save_arch(arch, out)
        assert load_arch(out) == arch
    text = format_structure_text(arch, "damoyolo")
    assert "SuperResConv" in text and "SuperResK1KX'" not in text
    assert parse_structure_text(format_structure_text(arch, "tinynas")) == arch


def test_damoyolo_t_facts():
    arch = load_arch(arch_path("damoyolo-t"))
    assert [b.out_channels for b in arch.blocks] == [24, 64, 96, 192, 192, 384]
    assert [b.depth for b in arch.blocks[1:]] == [2, 2, 2, 2, 1]
    # 1 stem layer + 2 layers per K1KX unit: 1 + 2 * (2 + 2 + 2 + 2 + 1)
    assert arch.layers() == 19
    # The stem closes the first stage because block 1 has stride 2; 5 stages in all.
    assert arch.stage_ends() == (0, 1, 2, 4, 5)


def test_tinynas_class_names_and_short_names_are_accepted():
    tinynas = [dict(b) for b in TINY]
    damo = [dict(b, **{"class": "SuperResConvK1KX"}) if b["class"] == "SuperResK1KX" else dict(b) for b in TINY]
    short = [dict(b, **{"class": "k1kx"}) if b["class"] == "SuperResK1KX" else dict(b) for b in TINY]
    assert arch_from_dicts(tinynas) == arch_from_dicts(damo) == arch_from_dicts(short)


def test_quantisation_keys_are_ignored():
    blocks = [dict(b, nbitsA=8, nbitsW=8) for b in TINY]
    blocks[1]["inner_class"] = "ResK1KX"
    assert arch_from_dicts(blocks) == arch_from_dicts(TINY)


def test_arch_is_a_hashable_value():
    a, b = arch_from_dicts(TINY), arch_from_dicts([dict(x) for x in TINY])
    assert a == b and hash(a) == hash(b) and a.key == b.key and a.digest() == b.digest()
    c = a.with_block(2, a.blocks[2].replace(kernel=3))
    assert c != a and c.key != a.key
    with pytest.raises(Exception):
        a.blocks[0].out_channels = 8  # frozen


def test_optional_groups_and_activation_round_trip(tmp_path):
    blocks = [dict(b) for b in TINY]
    blocks[2].update(g=4, act="silu")
    arch = arch_from_dicts(blocks)
    assert arch.blocks[2].groups == 4 and arch.blocks[2].act == "silu"
    save_arch(arch, tmp_path / "g.yaml")
    assert load_arch(tmp_path / "g.yaml") == arch


def _bad(change, index=1):
    blocks = [dict(b) for b in TINY]
    blocks[index].update(change)
    return blocks


@pytest.mark.parametrize("blocks, field, words", [
    (_bad({"class": "SuperResMagic"}), "blocks[1].class", "unknown block class"),
    (_bad({"in": 24}), "blocks[1].in", "do not chain"),
    (_bad({"s": 3}), "blocks[1].s", "stride must be 1 or 2"),
    (_bad({"k": 4}), "blocks[1].k", "kernel must be odd"),
    (_bad({"out": -32}), "blocks[1].out", "positive integer"),
    (_bad({"L": 0}), "blocks[1].L", "positive integer"),
    (_bad({"btn": 2.5}), "blocks[1].btn", "positive integer"),
    (_bad({"wat": 1}), "blocks[1].wat", "unknown key"),
    (_bad({"g": 3}, index=2), "blocks[2].g", "do not divide"),
    (_bad({"act": "sparkle"}), "blocks[1].act", "unknown activation"),
    ([dict(TINY[1])], "blocks[0].class", "stem"),
])
def test_bad_blocks_name_file_and_field(blocks, field, words, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"blocks": blocks}))
    with pytest.raises(UserError) as err:
        load_arch(path)
    message = str(err.value)
    assert message.startswith(str(path)) and field in message and words in message
    assert "\n" not in message


def test_missing_key_is_named(tmp_path):
    blocks = [dict(b) for b in TINY]
    del blocks[1]["btn"]
    path = tmp_path / "a.yaml"
    path.write_text(json.dumps(blocks))  # JSON is valid YAML
    with pytest.raises(UserError, match=r"blocks\[1\]\.btn: missing"):
        load_arch(path)


@pytest.mark.parametrize("suffix, text, field", [
    (".yaml", "blocks: [ {class: ConvKXBNRELU, in: 3\n", "line"),
    (".json", '{"blocks": [', "line 1"),
    (".txt", "[{'class': 'ConvKXBNRELU', 'in': 3,", "line 1"),
    (".txt", "__import__('os').system('echo pwned')", "structure"),
    (".yaml", "just a string", "blocks"),
])
def test_malformed_files(suffix, text, field, tmp_path):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_arch(path)
    assert str(err.value).startswith(f"{path}: {field}")


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_arch(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="unknown architecture format"):
        load_arch(tmp_path / "arch.toml")


def test_constructing_an_invalid_arch_directly_fails():
    good = arch_from_dicts(TINY)
    with pytest.raises(UserError, match="do not chain"):
        Arch(good.blocks[:1] + good.blocks[2:])
    with pytest.raises(UserError, match="stride must be 1 or 2"):
        Arch((good.blocks[0].replace(stride=3),) + good.blocks[1:])


def test_layers_per_depth_match_block_kinds():
    assert {k.short: k.layers_per_depth for k in BLOCK_KINDS.values()} == {
        "conv": 1, "k1kx": 2, "kxkx": 2, "k1kxk1": 3, "k1dwk1": 3}
    spec = BlockSpec("SuperResK1KXK1", 16, 64, 2, 3, depth=4, bottleneck=16)
    assert spec.layers == 12


def test_parse_arch_accepts_bare_lists_in_yaml():
    text = "\n".join(f"- {json.dumps(b)}" for b in TINY)
    assert parse_arch(text, "yaml") == arch_from_dicts(TINY)


@pytest.mark.parametrize("changes, field, limit", [
    ({"out": 100_000_000}, "blocks[1].out", "65536"),
    ({"btn": 70_000}, "blocks[1].btn", "65536"),
    ({"k": 129}, "blocks[1].k", "127"),
    ({"L": 5000}, "blocks[1].L", "1024"),
])
def test_sizes_beyond_any_real_network_are_refused(changes, field, limit, tmp_path, capsys, monkeypatch):
    import torch

    from tinynas.cli import main

    def no_allocation(*args, **kwargs):  # a regression fails here, not by exhausting memory
        raise AssertionError("the architecture reached torch")

    monkeypatch.setattr(torch, "randn", no_allocation)
    path = tmp_path / "huge.json"
    blocks = [dict(b) for b in TINY]
    blocks[1].update(changes)
    blocks[2]["in"] = blocks[1]["out"]
    path.write_text(json.dumps(blocks))
    assert main(["score", str(path), "--method", "entropy"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tinynas: error: {path}: {field}:") and limit in lines[0]


def test_the_largest_allowed_sizes_still_make_an_arch():
    from tinynas.arch import MAX_CHANNELS, MAX_DEPTH, MAX_KERNEL

    stem = BlockSpec("ConvKXBNRELU", 3, MAX_CHANNELS, 2, MAX_KERNEL)
    deep = BlockSpec(K1KX, MAX_CHANNELS, 16, 1, 3, depth=MAX_DEPTH, bottleneck=MAX_CHANNELS)
    assert Arch((stem, deep)).layers() == 1 + 2 * MAX_DEPTH
