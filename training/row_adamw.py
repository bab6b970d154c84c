"""AdamW and gradient clipping whose work on the word embedding is proportional to the rows a
step touches, with AdamW's exact semantics.

The word embedding is most of the model (96M of e5-small's 117.5M parameters, 192M of
xlm-roberta-base's 278M), yet a batch of 24 PAN-X sentences touches a few hundred of its 250,002
rows. A dense AdamW step and a dense gradient norm walk every row. What each row needs:
- a row never touched so far has zero moments, so AdamW's update there is the decoupled weight
  decay alone, w <- w (1 - lr_t wd). Every such row owes the same running product of those
  factors: one number, `pending_decay`, applied to a row when a training forward first reads it
  (a pre-hook on the embedding, so the forward sees AdamW's value), and to all untouched rows
  when the weights are materialised (before evaluation and checkpoints);
- a row touched at some step has moments from then on and takes the full update every step,
  even with a zero gradient (its moments decay and still move it). Those "active" rows are
  gathered, updated by PyTorch's fused AdamW kernel with their moments kept compact (slot k is
  the k-th row to become active), and scattered back: the work is proportional to the rows seen
  so far, which on PAN-X stay a few percent of the vocabulary;
- clipping: the rest of the gradient is zero, so the embedding's part of the norm comes from the
  touched rows alone, and only they need scaling.

The other parameters go through PyTorch's fused AdamW. Used on one CPU process, beside
`training.embedding_grad.RowSparseGrad` (training/prepare.py's `keeps_embedding_rows` decides);
on a GPU and under DDP training keeps the dense fused AdamW (correct everywhere; the reducer
expects dense gradients). The row bookkeeping (`unique()`, boolean indexing, `nonzero()`) would
wait for a GPU every step; on a CPU there is nothing to wait for.
"""
from __future__ import annotations

import torch

from .embedding_grad import RowSparseGrad


class RowAdamW(torch.optim.Optimizer):
    def __init__(self, groups: list[dict], row_grad: RowSparseGrad, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(groups, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": 0.0})
        self.row_grad, self.row_param = row_grad, row_grad.weight
        # The dense part: the same groups without the embedding, in one fused AdamW.
        self.dense_index = [k for k, g in enumerate(self.param_groups)
                            if any(p is not self.row_param for p in g["params"])]
        self.dense = torch.optim.AdamW(
            [{**{k: v for k, v in self.param_groups[k].items() if k != "params"},
              "params": [p for p in self.param_groups[k]["params"] if p is not self.row_param]}
             for k in self.dense_index], lr=lr, betas=betas, eps=eps, fused=True)
        w = self.row_param
        # Moments of the active rows only, compact: slot k holds row order[k], in the order rows
        # became active, so an update reads and writes them in place without gathering.
        self.row_state = {"step": 0, "exp_avg": torch.zeros_like(w), "exp_avg_sq": torch.zeros_like(w),
                          "order": torch.zeros(0, dtype=torch.long, device=w.device),
                          "active": torch.zeros(w.shape[0], dtype=torch.bool, device=w.device),
                          "pending_decay": 1.0}
        self.hook = row_grad.embedding.register_forward_pre_hook(self._catch_up)

    def close(self) -> None:
        """Detach from the model (its embedding's forward hook), when the model outlives the
        optimizer: a benchmark builds a fresh one per measurement."""
        self.hook.remove()

    @torch.no_grad()
    def _catch_up(self, module, args) -> None:
        """Before a training forward: rows it reads for the first time take the decay they owe
        and join the active rows (zero moments: from now on the full update is exact for them)."""
        if module.training:
            self._activate(args[0].unique())

    def _activate(self, rows: torch.Tensor) -> None:
        st, w = self.row_state, self.row_param
        new = rows[~st["active"][rows]]
        if new.numel():
            if st["pending_decay"] != 1.0:
                w.index_copy_(0, new, w.index_select(0, new) * st["pending_decay"])
            st["active"][new] = True
            st["order"] = torch.cat([st["order"], new])

    @torch.no_grad()
    def step(self, closure=None):
        for k, dense_group in zip(self.dense_index, self.dense.param_groups):
            dense_group["lr"] = self.param_groups[k]["lr"]  # the schedule sets the outer groups
        self.dense.step()
        # Looked up each step: load_state_dict replaces the group dicts.
        self._row_step(next(g for g in self.param_groups if any(p is self.row_param for p in g["params"])))

    def _row_step(self, group: dict) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        st, w = self.row_state, self.row_param
        st["step"] += 1
        t = st["step"]
        self._activate(self.row_grad.touched_rows())  # already done by the forward hook, unless it was bypassed
        rows, a = st["order"], len(st["order"])  # (A,) every row with moments, in slot order
        p = w.index_select(0, rows)  # (A, H)
        g = w.grad.index_select(0, rows) if w.grad is not None else torch.zeros_like(p)
        # PyTorch's fused AdamW kernel on the active rows; the compact moments update in place.
        torch._fused_adamw_([p], [g], [st["exp_avg"][:a]], [st["exp_avg_sq"][:a]], [],
                            [torch.tensor(float(t), device=w.device)], lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd,
                            eps=eps, amsgrad=False, maximize=False)
        w.index_copy_(0, rows, p)
        st["pending_decay"] *= 1 - lr * wd  # what every untouched row now owes

    @torch.no_grad()
    def materialize(self) -> None:
        """Apply the decay the untouched rows owe, so the weights are exactly AdamW's."""
        st = self.row_state
        if st["pending_decay"] != 1.0:
            idle = (~st["active"]).nonzero().squeeze(1)
            self.row_param.index_copy_(0, idle, self.row_param.index_select(0, idle) * st["pending_decay"])
            st["pending_decay"] = 1.0

    def row_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """exp_avg and exp_avg_sq of the embedding as (V, H) tensors, as torch.optim.AdamW holds them."""
        st, a = self.row_state, len(self.row_state["order"])
        out = []
        for key in ("exp_avg", "exp_avg_sq"):
            full = torch.zeros_like(self.row_param)
            full.index_copy_(0, st["order"], st[key][:a])
            out.append(full)
        return out[0], out[1]

    def state_dict(self) -> dict:
        return super().state_dict() | {"dense": self.dense.state_dict(), "rows": dict(self.row_state)}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        dense, rows = state.pop("dense"), state.pop("rows")
        super().load_state_dict(state)
        self.dense.load_state_dict(dense)
        w = self.row_param
        self.row_state = {k: v.to(w.device).clone() if torch.is_tensor(v) else v for k, v in rows.items()}


@torch.no_grad()
def clip_grad_norm_rows(params, row_grad: RowSparseGrad, max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ over `params` and the row gradient, reading and scaling only
    the embedding rows the step touched."""
    rows = row_grad.touched_rows()
    dense = [p.grad for p in params if p.grad is not None and p is not row_grad.weight]
    norms = [torch.linalg.vector_norm(g) for g in dense]
    if row_grad.weight.grad is not None:
        norms.append(torch.linalg.vector_norm(row_grad.weight.grad.index_select(0, rows)))
    total = torch.linalg.vector_norm(torch.stack(norms))
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(dense, coef)
    if row_grad.weight.grad is not None:
        g = row_grad.weight.grad
        g.index_copy_(0, rows, g.index_select(0, rows) * coef)
    return total
