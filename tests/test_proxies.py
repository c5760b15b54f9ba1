"""Zero-cost proxies against the values their authors' code gives on a fixed network and batch.

Expected values were made by running the authors' public code on ``proxy_nets``'s network and
batch (torch 2.13 CPU, one thread): SamsungLabs/zero-cost-nas at a43bfbc9 (``find_measures`` with
``F.cross_entropy``, one batch; the NAS-Bench models' ``get_prunable_copy``: BatchNorm removed for
SynFlow, train mode), BayesWatch/nas-without-training at b3a82a66 (``score_networks.py``'s ReLU
hooks, ``scores.hooklogdet``) and idstcv/ZenNAS at d1d617e0 (``compute_nas_score``, mixup_gamma
1e-2, batch 6 at 32 px, ``torch.manual_seed(0)`` before it, the backbone's last map as
``forward_pre_GAP``).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from tinynas.errors import UserError
from tinynas.scores.proxies import grad_norm, naswot, snip, synflow, zen_score
from tinynas.scores.proxies.saliency import weighted_layers

from proxy_nets import BATCH, SIZE, reference_batch, reference_classifier

AUTHORS = {
    "synflow": 389788.63807247893,  # float64 throughout, as theirs
    "snip": 12.400489807128906,
    "grad_norm": 9.035170555114746,
    "naswot": 50.74017575498644,
    "zen": 8.218330383300781,  # float32 sums there, float64 here: equal to ~1e-7
    "zen_repeat3": 9.517899831136068,
}


def _features(net, x):
    return net.backbone(x)[-1]


def _computed(name: str) -> float:
    net, (images, labels) = reference_classifier(), reference_batch()
    if name == "synflow":
        return synflow(net, (3, SIZE, SIZE))
    if name in ("snip", "grad_norm"):
        return {"snip": snip, "grad_norm": grad_norm}[name](net, images, labels, F.cross_entropy)
    if name == "naswot":
        return naswot(net, images)
    return zen_score(net, _features, BATCH, SIZE, repeat=3 if name == "zen_repeat3" else 1, seed=0)


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_each_proxy_equals_its_authors_code_on_the_reference_network(name):
    assert _computed(name) == pytest.approx(AUTHORS[name], rel=1e-6, abs=0)


@pytest.mark.parametrize("name", ["synflow", "snip", "naswot", "zen"])
def test_a_proxy_leaves_the_network_it_scores_as_it_was(name):
    net = reference_classifier()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    images, labels = reference_batch()
    net.eval()
    {"synflow": lambda: synflow(net, (3, SIZE, SIZE)), "snip": lambda: snip(net, images, labels, F.cross_entropy),
     "naswot": lambda: naswot(net, images), "zen": lambda: zen_score(net, _features, BATCH, SIZE)}[name]()
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_synflow_conserves_the_flow_from_the_first_layer_to_the_last():
    """Without BatchNorm every path carries its flow through: on a chain of layers the first and
    the last layer's saliency sums are equal (Tanaka et al.'s conservation law)."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3, padding=1),
                              torch.nn.Flatten(), torch.nn.Linear(6 * 8 * 8, 5))
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p)
        p.data.abs_()
    with torch.no_grad():
        for layer in weighted_layers(net):
            layer.bias.zero_()  # a bias adds flow of its own
    total = synflow(net, (3, 8, 8))
    clone = net.double()
    out = clone(torch.ones(1, 3, 8, 8, dtype=torch.float64)).sum()
    out.backward()
    sums = [float((m.weight * m.weight.grad).detach().sum()) for m in weighted_layers(clone)]
    assert sums[0] == pytest.approx(sums[-1], rel=1e-9) and sums[0] == pytest.approx(float(out.detach()), rel=1e-9)
    assert total == pytest.approx(sum(sums), rel=1e-12)


def test_naswot_cannot_tell_two_copies_of_an_image_apart():
    images, _ = reference_batch()
    twice = torch.cat([images[:3], images[:3]])
    assert naswot(reference_classifier(), twice) == -math.inf
    assert math.isfinite(naswot(reference_classifier(), images))


def test_naswot_without_relus_is_a_one_line_error():
    with pytest.raises(UserError, match="no ReLU module"):
        naswot(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.SiLU()), torch.rand(2, 3, 8, 8))


def test_the_zen_score_is_fixed_by_its_seed_and_moves_with_it():
    net = reference_classifier()
    first = zen_score(net, _features, BATCH, SIZE, seed=5)
    assert zen_score(net, _features, BATCH, SIZE, seed=5) == first
    assert zen_score(net, _features, BATCH, SIZE, seed=6) != first


def test_grad_norm_adds_the_layer_norms_rather_than_taking_one_global_norm():
    net, (images, labels) = reference_classifier(), reference_batch()
    net.train()
    F.cross_entropy(net(images), labels).backward()
    norms = [float(m.weight.grad.norm()) for m in weighted_layers(net)]
    value = grad_norm(reference_classifier(), images, labels, F.cross_entropy)
    assert value == pytest.approx(sum(norms), rel=1e-6)
    assert value > math.sqrt(sum(n * n for n in norms)) * 1.01
