"""fused_backward_pass: each weight is updated as soon as its gradient is complete, and the
gradient is freed at once, so the gradients of the whole model are never held together.

One optimizer of the chosen class per weight (any optimizer works, not only Adafactor), driven
by torch's post-accumulate-grad hook. The outer object is a torch Optimizer over the original
parameter groups, so the learning-rate schedule sets its groups' "lr" as usual and accelerate
saves and restores its state like any optimizer's.
"""

from __future__ import annotations

from typing import Callable

import torch


class FusedBackwardOptimizer(torch.optim.Optimizer):
    def __init__(self, param_groups: list[dict], build: Callable[[list[dict]], torch.optim.Optimizer]):
        super().__init__(param_groups, defaults={})
        self.per_parameter: list[torch.optim.Optimizer] = []
        self._handles = []
        for group in self.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            for param in group["params"]:
                inner = build([{"params": [param], **settings}])
                self.per_parameter.append(inner)
                self._handles.append(param.register_post_accumulate_grad_hook(
                    self._stepper(inner, group)))

    @staticmethod
    def _stepper(inner: torch.optim.Optimizer, group: dict):
        def step_now(param: torch.Tensor) -> None:
            # The schedule changes the outer group's rate; each weight steps at the current one.
            inner.param_groups[0]["lr"] = group["lr"]
            inner.step()
            param.grad = None

        return step_now

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ARG002 - every weight was stepped in the backward pass
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: ARG002
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None

    def state_dict(self) -> dict:
        return {"groups": [{k: v for k, v in group.items() if k != "params"}
                           for group in self.param_groups],
                "per_parameter": [inner.state_dict() for inner in self.per_parameter]}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get("per_parameter")
        if saved is None or len(saved) != len(self.per_parameter) \
                or len(state_dict["groups"]) != len(self.param_groups):
            from ..errors import UserError

            raise UserError("the state was saved without fused_backward_pass or for other "
                            "weights", "resume with the settings the state was saved with")
        for group, values in zip(self.param_groups, state_dict["groups"]):
            group.update(values)
        for inner, values in zip(self.per_parameter, saved):
            inner.load_state_dict(values)

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
