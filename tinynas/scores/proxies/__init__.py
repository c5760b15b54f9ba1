"""Zero-cost proxies of a network's trained accuracy, computed on an ``nn.Module`` as their authors'
public code computes them, for the proxy study (``benchmarks/proxy_study.py``).

- ``synflow``, ``snip``, ``grad_norm``: the saliency sums of Abdelfattah et al., "Zero-Cost Proxies
  for Lightweight NAS" (ICLR 2021; SamsungLabs/zero-cost-nas);
- ``naswot``: the ReLU-code kernel log-determinant of Mellor et al., "Neural Architecture Search
  without Training" (ICML 2021; BayesWatch/nas-without-training);
- ``zen_score``: Lin et al., "Zen-NAS" (ICCV 2021; idstcv/ZenNAS).

The MAE scores (closed form and forward pass) price an ``Arch`` directly: ``tinynas.scores``.
Each proxy works on a copy of the network, in train mode as the authors' code runs it; the
network passed in is left as it was. Their values are pinned against the authors' code in
tests/test_proxies.py.
"""

from .naswot import naswot
from .saliency import grad_norm, snip, synflow
from .zen import zen_score

__all__ = ["grad_norm", "naswot", "snip", "synflow", "zen_score"]
