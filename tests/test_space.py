"""Search spaces: loading, membership, and the mutation property (valid neighbours only)."""

import random

import pytest
import yaml

from conftest import SPACE_NAMES, arch_path, space_path
from tinynas import UserError, load_arch
from tinynas.space import load_space, space_from_dict


def independent_problems(space, arch):
    """The space's rules, restated here so the property test does not trust space.problems."""
    found = []
    ref = space.initial.blocks
    if len(arch.blocks) != len(ref):
        return ["length"]
    prev_out = space.in_channels
    for i, (b, r, lim) in enumerate(zip(arch.blocks, ref, space.limits)):
        if b.in_channels != prev_out:
            found.append(f"{i}: chain")
        prev_out = b.out_channels
        if (b.cls, b.stride) != (r.cls, r.stride):
            found.append(f"{i}: class/stride")
        if not lim.out[0] <= b.out_channels <= lim.out[1]:
            found.append(f"{i}: out range")
        if b.kernel not in lim.kernels or b.kernel % 2 == 0:
            found.append(f"{i}: kernel")
        if space.nondecreasing_channels and b.out_channels < b.in_channels:
            found.append(f"{i}: decreasing")
        if b.kind.has_bottleneck:
            if not lim.depth[0] <= b.depth <= lim.depth[1]:
                found.append(f"{i}: depth")
            ratio = b.bottleneck / b.out_channels
            if not lim.btn_ratio[0] - 1e-9 <= ratio <= lim.btn_ratio[1] + 1e-9:
                found.append(f"{i}: btn ratio {ratio}")
        if min(b.in_channels, b.out_channels, b.kernel, b.depth) <= 0:
            found.append(f"{i}: non-positive")
    return found


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_ten_thousand_mutations_stay_valid(name):
    space = load_space(space_path(name))
    rng = random.Random(name)
    arch = space.initial
    seen = set()
    for step in range(10_000):
        child = space.mutate(arch, rng, blocks=1 + step % 3)
        assert child != arch
        problems = independent_problems(space, child)
        assert not problems, (step, problems, child.key)
        seen.add(child.key)
        # Restart now and then so the walk also explores near the initial architecture.
        arch = space.initial if step % 2000 == 1999 else child
    assert len(seen) > 2000  # it really moves around the space


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_mutation_reaches_every_kind_of_change(name):
    space = load_space(space_path(name))
    rng = random.Random(7)
    changed = set()
    for _ in range(500):
        parent = space.random_arch(rng, steps=5)
        child = space.mutate(parent, rng)
        for a, b in zip(parent.blocks, child.blocks):
            for attr in ("out_channels", "bottleneck", "depth", "kernel"):
                if getattr(a, attr) != getattr(b, attr):
                    changed.add(attr)
    expected = {"out_channels", "bottleneck", "depth"}
    if any(len(lim.kernels) > 1 for lim in space.limits):
        expected.add("kernel")
    assert expected <= changed


def test_mutation_is_deterministic_for_a_seed():
    space = load_space(space_path("k1kx"))
    walk = lambda seed: space.random_arch(random.Random(seed), steps=50)
    assert walk(3) == walk(3)
    assert walk(3) != walk(4)


def test_damoyolo_backbones_are_members_of_their_spaces():
    k1kx, kxkx = load_space(space_path("k1kx")), load_space(space_path("kxkx"))
    for name, space in (("t", k1kx), ("s", k1kx), ("m", kxkx), ("l", kxkx)):
        arch = load_arch(arch_path(f"damoyolo-{name}"))
        # The published files list the RGB stem; the searched stem sees the Focus output.
        focus = arch.with_block(0, arch.blocks[0].replace(in_channels=12))
        assert space.contains(focus), (name, list(space.problems(focus)))


def test_bottleneck_wider_than_out_is_outside_k1kx():
    space = load_space(space_path("k1kx"))
    arch = space.initial.with_block(2, space.initial.blocks[2].replace(bottleneck=128))
    with pytest.raises(UserError) as err:
        space.check(arch, "cand.yaml")
    assert str(err.value).startswith("cand.yaml: blocks[2].btn: bottleneck 128 outside")


def _doc():
    return yaml.safe_load(space_path("k1kx").read_text())


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d.pop("initial"), "initial"),
    (lambda d: d.update(resolution=-1), "resolution"),
    (lambda d: d["blocks"].pop(), "blocks"),
    (lambda d: d["blocks"][2].update(out=[128, 64]), "blocks[2].out"),
    (lambda d: d["blocks"][2].update(depth=[1, 2]), "blocks[2].depth"),
    (lambda d: d["blocks"][1].update(kernels=[3, 4]), "blocks[1].kernels"),
    (lambda d: d["mutation"].update(channel_multipliers=[]), "mutation.channel_multipliers"),
    (lambda d: d["initial"][2].update(out=256), "blocks[3].in"),
    (lambda d: d["blocks"][2].update(out=[8, 64]), "initial: blocks[2].out"),
])
def test_bad_space_files_name_the_field(edit, field):
    doc = _doc()
    edit(doc)
    with pytest.raises(UserError) as err:
        space_from_dict(doc, "space.yaml")
    assert str(err.value).startswith(f"space.yaml: {field}")


def test_space_file_errors(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_space(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninitial: [\n")
    with pytest.raises(UserError, match="malformed YAML"):
        load_space(bad)


def test_channels_stay_multiples_of_the_divisor():
    space = load_space(space_path("k1kx"))
    rng = random.Random(11)
    for _ in range(300):
        arch = space.random_arch(rng, steps=10)
        for b in arch.blocks[1:]:
            assert b.out_channels % space.channel_divisor == 0
            assert b.bottleneck % space.channel_divisor == 0
