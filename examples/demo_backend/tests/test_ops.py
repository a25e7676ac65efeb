"""Every op of lazygen_demo_native_functions.yaml on device="lazy" against eager CPU, traced by
lazygen_demo's own generated kernels (each bumps its lazygen_demo::<kernel> counter).

    python -m pytest tests

Each case calls its op on two random 4x4 tensors `a` and `b`; edit a call
to try other arguments. `lazygen init` wrote one case per op of the yaml;
add a case when you add an op.
"""

from __future__ import annotations

import pytest
import torch
import torch._lazy
import torch._lazy.metrics as metrics

import lazygen_demo

# (op, the counter its kernel bumps, a call of it on a and b)
CASES = [
    ("relu", "lazygen_demo::relu", lambda a, b: torch.relu(a)),
    ("sigmoid", "lazygen_demo::sigmoid", lambda a, b: torch.sigmoid(a)),
    ("add.Tensor", "lazygen_demo::add", lambda a, b: torch.add(a, b, alpha=2.5)),
    ("sub.Tensor", "lazygen_demo::sub", lambda a, b: torch.sub(a, b, alpha=0.5)),
    ("mul.Tensor", "lazygen_demo::mul", lambda a, b: a * b),
    ("pow.Tensor_Scalar", "lazygen_demo::pow", lambda a, b: torch.pow(a, 3)),
    ("leaky_relu", "lazygen_demo::leaky_relu", lambda a, b: torch.nn.functional.leaky_relu(a, 0.2)),
    ("clamp", "lazygen_demo::clamp", lambda a, b: torch.clamp(a, min=-0.5, max=0.5)),
    ("mm", "lazygen_demo::mm", lambda a, b: a @ b),
    ("sum.dim_IntList", "lazygen_demo::sum", lambda a, b: a.sum(dim=1, keepdim=True)),
]


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    lazygen_demo.register()


def _cpu(value):
    return [_cpu(v) for v in value] if isinstance(value, (tuple, list)) else value.cpu()


@pytest.mark.parametrize("op, counter, call", CASES, ids=[getattr(c, "values", c)[0] for c in CASES])
def test_op_runs_through_our_kernel(op: str, counter: str, call) -> None:
    torch.manual_seed(0)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    lazy_a, lazy_b = a.to("lazy"), b.to("lazy")
    torch._lazy.mark_step()
    metrics.reset()
    got = call(lazy_a, lazy_b)
    torch._lazy.mark_step()  # compile and run the graph
    counters = set(metrics.counter_names())
    assert counter in counters, f"{op} did not run through lazygen_demo's kernel: {sorted(counters)}"
    kernel = counter.split("::", 1)[1]
    assert f"lazy::{kernel}" not in counters, f"PyTorch's own kernel ran for {op}"
    torch.testing.assert_close(_cpu(got), _cpu(call(a, b)))
