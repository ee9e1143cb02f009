"""The LazyNet module: log-linear-exp residual blocks and one explicit Euler step (method §1).

``f(x) = W_out · h_D + b_out`` with ``h_k = exp(W_E,k · log(clamp(W_L,k · h_(k-1) + b_L,k)) + b_E,k)``
and ``F(x) = x + f(x)``. Each hidden unit is a generalised monomial of positive linear combinations
of genes, so multiplicative effects are explicit terms and Jacobians read as elasticities.
The module takes tensors only; it never sees AnnData.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig

_B_L_FLOOR = 1e-3  # keeps b_L > 0 under the positive parametrisation


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return torch.where(y > 20, y, torch.log(torch.expm1(y.clamp_min(1e-12))))


def _linear_start_W_L(n_out: int, n_in: int, gen: torch.Generator) -> torch.Tensor:
    """``W_L`` of the linear start: each input feeds one unit (+3e-4 of every other input).

    With ``n_out == n_in`` this is ``I`` (method §7b). For a bottleneck (``n_out < n_in``) the
    inputs are split at random into ``n_out`` groups and each unit sums one group, so every gene
    has a path to the output from the first step. Measured on the demo with H = 64 (2 seeds):
    dense random positive rows (every unit a near-copy of the mean expression) gave a Jacobian at
    chance on perturbed regulators (AUROC 0.52), one selected gene per unit 0.52, groups 0.86
    (0.94 with the hidden-width learning rate).
    """
    W_L = torch.full((n_out, n_in), 3e-4)
    if n_out == n_in:
        W_L[torch.arange(n_in), torch.arange(n_in)] = 1.0
        return W_L
    # a group's sum: measured better than its mean on the demo (H = 64: AUROC 0.94 vs 0.85), though
    # at 18k genes (groups of ~70) the first epoch's loss spikes before settling
    W_L[torch.arange(n_in) % n_out, torch.randperm(n_in, generator=gen)] = 1.0
    return W_L


def _output_scale(output: str, ref: torch.Tensor) -> torch.Tensor:
    """Per-gene scale of the output change so that ``∂f/∂x`` at ``ref`` is ``W_out ∂h/∂x``.

    ``"counts"``: ``e^x`` (``f = log1p(g e^−x)``); ``"fold"``: ``e^x / expm1(x)``
    (``f = log1p(expm1(x) e^g) − x``), capped at 1e3 for a gene of (almost) no expression.
    """
    if output == "counts":
        return torch.exp(ref)
    return (torch.exp(ref) / torch.expm1(ref).clamp_min(1e-3)).clamp(max=1e3)


class LogLinExpBlock(nn.Module):
    """One block ``h = exp(W_E · log(clamp(W_L · x + b_L)) + b_E)``.

    With ``positive=True`` the weights are stored as raw parameters ``A``, ``c`` and used as
    ``W_L = softplus(A)``, ``b_L = softplus(c) + 1e-3``, so ``W_L x + b_L > 0`` for every ``x >= 0``
    and the log clamp never bites (method §7b).

    Parameters
    ----------
    n_in, n_out
        Input and output widths.
    positive
        Use the softplus parametrisation of ``W_L`` and ``b_L``.
    log_floor, exp_clamp
        Clamp of the log argument (minimum) and of the exp argument (maximum).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        positive: bool = True,
        log_floor: float = 1e-6,
        exp_clamp: float = 20.0,
        centred: bool = False,
    ) -> None:
        super().__init__()
        self.positive = positive
        self.log_floor = log_floor
        self.exp_clamp = exp_clamp
        self.A = nn.Parameter(torch.zeros(n_out, n_in))
        self.c = nn.Parameter(torch.zeros(n_out))
        self.W_E = nn.Parameter(torch.eye(n_out))
        self.b_E = nn.Parameter(torch.zeros(n_out))
        if centred:  # log u at the reference state, set by set_log_reference
            self.register_buffer("log_ref", torch.zeros(n_out))
        else:
            self.log_ref = None

    @torch.no_grad()
    def set_log_reference(self, x: torch.Tensor) -> None:
        """Centre the log input on its value at ``x`` (1-D); ``b_E`` moves so the function stays the same."""
        if self.log_ref is None:
            raise ValueError("set_log_reference needs a block built with centred=True.")
        log_ref = torch.log(F.linear(x, self.W_L, self.b_L).clamp_min(self.log_floor))
        self.b_E.add_(self.W_E @ (log_ref - self.log_ref))
        self.log_ref.copy_(log_ref)

    @property
    def W_L(self) -> torch.Tensor:
        """Effective ``W_L`` (non-negative under the positive parametrisation)."""
        return F.softplus(self.A) if self.positive else self.A

    @property
    def b_L(self) -> torch.Tensor:
        """Effective ``b_L`` (> 0 under the positive parametrisation)."""
        return F.softplus(self.c) + _B_L_FLOOR if self.positive else self.c

    @torch.no_grad()
    def set_effective(self, W_L: torch.Tensor, b_L: torch.Tensor) -> None:
        """Set the effective ``W_L`` and ``b_L`` (inverting the softplus when positive)."""
        if self.positive:
            self.A.copy_(_inverse_softplus(W_L.clamp_min(1e-8)))
            self.c.copy_(_inverse_softplus((b_L - _B_L_FLOOR).clamp_min(1e-8)))
        else:
            self.A.copy_(W_L)
            self.c.copy_(b_L)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = F.linear(x, self.W_L, self.b_L)
        log_u = torch.log(u.clamp_min(self.log_floor))
        if self.log_ref is not None:
            log_u = log_u - self.log_ref
        z = F.linear(log_u, self.W_E, self.b_E)
        return torch.exp(z.clamp_max(self.exp_clamp))


class LazyNet(nn.Module):
    """LazyNet: ``x -> f(x)``, the change of one Euler step; ``step(x) = x + f(x)``.

    Parameters
    ----------
    n_genes
        Number of genes G (input and output width).
    config
        Architecture; ``config.hidden_for(n_genes)`` gives the hidden width.
    seed
        Seed of the initialisation noise.
    """

    def __init__(self, n_genes: int, config: ModelConfig = ModelConfig(), *, seed: int = 0) -> None:
        super().__init__()
        self.n_genes = int(n_genes)
        self.config = config
        self.hidden = config.hidden_for(self.n_genes)
        widths = [self.n_genes] + [self.hidden] * config.depth
        self.blocks = nn.ModuleList(
            LogLinExpBlock(
                a, b, positive=config.positive, log_floor=config.log_floor, exp_clamp=config.exp_clamp,
                centred=config.centre_log,
            )
            for a, b in zip(widths[:-1], widths[1:], strict=False)
        )
        self.out = nn.Linear(self.hidden, self.n_genes)
        if config.start == "control_covariance":  # set by start_at_jacobian; a slot so runs reload
            self.register_buffer("h_ref", torch.zeros(self.hidden))
        else:
            self.h_ref = None
        if config.anchor:  # the reference state itself, set by start_at_jacobian
            self.register_buffer("x_ref", torch.zeros(self.n_genes))
        else:
            self.x_ref = None
        if config.output in ("counts", "fold"):  # per-gene scale of the change, set by the start
            self.register_buffer("out_scale", torch.ones(self.n_genes))
        else:
            self.out_scale = None
        self.reset_parameters(seed=seed)

    @torch.no_grad()
    def reset_parameters(self, *, seed: int = 0) -> None:
        """Initialise as in method §7/§7b: no clamped unit, zero output layer (F = identity)."""
        gen = torch.Generator().manual_seed(int(seed))
        for block in self.blocks:
            n_out, n_in = block.A.shape
            if self.config.init == "linear":
                W_L = _linear_start_W_L(n_out, n_in, gen)
            else:
                W_L = torch.rand(n_out, n_in, generator=gen) * (2.0 / n_in)
            b_L = 0.05 + 0.1 * torch.rand(n_out, generator=gen)
            block.set_effective(W_L, b_L)
            bound = 1.0 / math.sqrt(n_out)
            noise = (torch.rand(n_out, n_out, generator=gen) * 2 - 1) * bound
            if self.config.init == "linear":
                # h = u at start: F is linear
                block.W_E.copy_(torch.eye(n_out) + self.config.init_noise * noise)
            else:
                block.W_E.copy_(self.config.init_noise * noise)
            block.b_E.zero_()
        self.out.weight.zero_()
        self.out.bias.zero_()

    @torch.no_grad()
    def start_at_jacobian(self, target: torch.Tensor, reference: torch.Tensor) -> None:
        """Set the output layer so that ``f(reference) = 0`` and ``∂f/∂x(reference) = target``.

        Used by the ``"control_covariance"`` start (:class:`ModelConfig`): ``target`` is then the
        regression of every gene on every other among control cells. Needs ``hidden == n_genes``
        (the hidden layer's Jacobian must be invertible).
        """
        if self.hidden != self.n_genes:
            msg = (f"A Jacobian start needs one hidden unit per gene (hidden {self.hidden} != genes "
                   f"{self.n_genes}); use hidden=None with at most {self.config.auto_full_width_max} genes.")
            raise ValueError(msg)

        ref = reference.to(dtype=self.out.weight.dtype)
        if self.config.centre_log:
            h = ref
            for block in self.blocks:
                block.set_log_reference(h)
                h = block(h)
        dh = torch.func.jacrev(self._hidden)(ref)  # (H, G)
        if self.out_scale is not None:
            # g = e^x_ref ⊙ W_out (h - h_ref): at x_ref, ∂f/∂x = e^(-x_ref) ∂g/∂x = W_out ∂h/∂x, so the
            # start is the log-output one, and a unit of W_out moves every gene's f by about as much
            # (without the scale, Adam fitted a highly expressed gene e^x times slower)
            self.out_scale.copy_(_output_scale(self.config.output, ref))
        weight = torch.linalg.solve(dh.T, target.to(dh.dtype).T).T  # W_out · dh = target
        self.out.weight.copy_(weight)
        self.out.bias.zero_()
        # f(x) = W_out (h(x) - h_ref) + b_out: the same function class, but the output layer's
        # gradient sees only how h moves away from the control state, so columns of genes that
        # training never moves keep their start instead of absorbing the shared effect.
        if self.h_ref is None:
            self.register_buffer("h_ref", self._hidden(ref).clone())
        else:
            self.h_ref.copy_(self._hidden(ref))
        if self.x_ref is not None:
            self.x_ref.copy_(ref)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self._output_change(x)
        if self.config.output == "fold":  # g is a log fold of expression: log1p(expm1(x) e^g) - x
            g = (g * self.out_scale).clamp(max=self.config.exp_clamp)
            return torch.log1p(torch.expm1(x).clamp_min(0.0) * torch.exp(g)) - x
        if self.out_scale is not None:
            g = g * self.out_scale  # g is a change in expression: log1p(expm1(x) + g) - x,
            # clamped so that the predicted expression expm1(x) + g is >= 0 (F = 0, f = -x); a tie
            # (x = 0 and g = 0, a gene silent at the anchored start) takes the unclamped branch
            rel = g * torch.exp(-x)
            return torch.where(rel >= torch.exp(-x) - 1.0, torch.log1p(rel), -x)
        return g

    def _output_change(self, x: torch.Tensor) -> torch.Tensor:
        h = self._hidden(x)
        if self.x_ref is not None:  # anchored: f(x_ref) = 0 exactly, whatever the weights
            return F.linear(h - self._hidden(self.x_ref), self.out.weight)
        if self.h_ref is not None:
            h = h - self.h_ref
        return self.out(h)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One explicit Euler step ``F(x) = x + f(x)``."""
        return x + self.forward(x)

    @torch.no_grad()
    def unconstrained(self) -> LazyNet:
        """An equivalent copy that stores the effective ``W_L`` and ``b_L`` directly.

        Same function, but no softplus per call: at 18k genes the softplus of ``W_L`` costs more
        than the rest of a forward pass, which matters for Jacobian columns and predictions.
        """
        like = next(self.parameters())
        clone = LazyNet(self.n_genes, self.config.replace(positive=False, hidden=self.hidden))
        clone = clone.to(dtype=like.dtype, device=like.device)
        for src, dst in zip(self.blocks, clone.blocks, strict=True):
            dst.A.copy_(src.W_L)
            dst.c.copy_(src.b_L)
            dst.W_E.copy_(src.W_E)
            dst.b_E.copy_(src.b_E)
            if src.log_ref is not None:
                dst.log_ref.copy_(src.log_ref)
        clone.out.load_state_dict(self.out.state_dict())
        if self.h_ref is not None:
            clone.h_ref.copy_(self.h_ref)
        if self.x_ref is not None:
            clone.x_ref.copy_(self.x_ref)
        if self.out_scale is not None:
            clone.out_scale.copy_(self.out_scale)
        return clone.eval()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        # runs saved before the per-gene output scale (2026-12-03) had none: a scale of 1 is
        # exactly the function they were trained as
        if self.out_scale is not None and prefix + "out_scale" not in state_dict:
            state_dict[prefix + "out_scale"] = torch.ones_like(self.out_scale)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def clamped_fraction(self, x: torch.Tensor) -> float:
        """Fraction of first-block units whose log argument sits at the clamp for inputs ``x``."""
        block = self.blocks[0]
        u = F.linear(x, block.W_L, block.b_L)
        return float((u <= block.log_floor).float().mean())
