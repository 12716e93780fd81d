"""First-stage training step: tokenizer losses + optional language-guided losses.

One generator step (tokenizer + LG module, one Adam as in the authors' code) and, for
adversarial tokenizers, one discriminator step (a second Adam). Gradient accumulation splits
the batch into micro-batches; the text encoder never trains (its features come from the cache).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from lgvq.lg.module import Reencode
from lgvq.text.base import TextFeatures
from lgvq.tokenizers.base import Tokenizer, TokenizerOutput
from lgvq.train.distributed import SINGLE, DistInfo, GradientReducer, StateSync
from lgvq.train.precision import Execution


class TokenizerTask:
    def __init__(
        self,
        model: Tokenizer,
        lg: nn.Module | None,
        *,
        lr: float,
        betas: tuple[float, float],
        micro_batch: int | None = None,
        device: torch.device | str = "cpu",
        dist: DistInfo = SINGLE,
        fast_path: bool = True,
        compile: bool = False,
        cpu_bf16: str = "off",
        reencode: Reencode | None = None,
    ) -> None:
        self.device = torch.device(device)
        # The GPU fast path, only ever on CUDA (CPU runs stay fp32 eager, so their results never
        # change): bf16 autocast, channels_last activations, TF32 matmuls/convolutions, fused Adam.
        # (cudnn.benchmark too: the tokenizer trains at one fixed image size.) On the CPU, `cpu_bf16`
        # (on | auto | off) decides whether the step runs under CPU bf16 autocast (lgvq.train.precision).
        self.execution = Execution.for_device(self.device, fast_path, channels_last=True, compile=compile,
                                              cpu_bf16=cpu_bf16)
        self.fast = self.execution.fast
        if self.fast:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        # torch.compile (opt-in, CPU or CUDA): the tokenizer's forward pass only, through a wrapper
        # that shares the module's parameters, so state dicts and checkpoints keep their plain keys.
        # The first step pays the compilation; fused kernels round differently from eager.
        self.forward = self.model
        if compile:
            # VQ-GAN's adaptive GAN weight differentiates through the graph twice (retain_graph),
            # which compiled backward functions refuse while they donate buffers (torch's own advice).
            import torch._functorch.config as functorch_config

            functorch_config.donated_buffer = False
            self.forward = torch.compile(self.model)
        self.lg = lg.to(self.device) if lg is not None else None
        self.reencode = reencode  # lg.mtp_input: leak_free (the decoder reads the re-encoded masked caption)
        self.micro_batch = micro_batch
        self.dist = dist  # data parallel: this rank's batch share; gradients averaged over ranks
        self.autocast = self.fast or self.execution.cpu_bf16  # bf16 autocast on either device
        adam = dict(lr=lr, betas=betas, **self.execution.optimizer_kwargs())
        gen_params = list(model.generator_parameters()) + (list(lg.parameters()) if lg is not None else [])
        self.opt_g = torch.optim.Adam([p for p in gen_params if p.requires_grad], **adam)
        disc = [p for p in model.discriminator_parameters() if p.requires_grad]
        self.opt_d = torch.optim.Adam(disc, **adam) if disc else None
        # Data parallel: bucketed all-reduces launched from gradient hooks during each optimiser's last
        # backward; afterwards only the buffers the step changed are broadcast (lgvq.train.distributed).
        self.reduce_g = GradientReducer((p for g in self.opt_g.param_groups for p in g["params"]), dist)
        self.reduce_d = GradientReducer(disc, dist) if disc else None
        self.sync_state = StateSync(self.modules().values(), dist)

    def modules(self) -> Mapping[str, nn.Module]:
        mods: dict[str, nn.Module] = {"tokenizer": self.model}
        if self.lg is not None:
            mods["lg"] = self.lg
        return mods

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        opts = {"generator": self.opt_g}
        if self.opt_d is not None:
            opts["discriminator"] = self.opt_d
        return opts

    def _chunks(self, batch: dict[str, Any]) -> list[tuple[Tensor, TextFeatures | None]]:
        x = batch["image"]
        if self.fast:  # pinned host memory: the copy to the GPU overlaps with the previous step's work
            x = x.pin_memory().to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        else:
            x = x.to(self.device)
        text = batch.get("text")
        if text is not None and self.fast:  # a pageable host-to-device copy would wait for the device
            text = TextFeatures(*(t.pin_memory().to(self.device, non_blocking=True) for t in
                                  (text.token_ids, text.tokens, text.valid, text.special, text.global_)))
        elif text is not None:
            text = text.to(self.device)
        size = self.micro_batch or x.shape[0]
        return [(x[i : i + size], text[i : i + size] if text is not None else None) for i in range(0, x.shape[0], size)]

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        """One optimisation step. The terms come back as detached device tensors, never read on the host
        here: the loop checks them for NaN/inf and logs them once per log window (lgvq.train.terms)."""
        chunks = self._chunks(batch)
        n = batch["image"].shape[0]
        logged: dict[str, Tensor] = {}

        self.opt_g.zero_grad(set_to_none=True)
        outputs: list[tuple[Tensor, TokenizerOutput]] = []
        for i, (x, text) in enumerate(chunks):
            with self.execution.autocast():
                out = self.forward(x)
                terms = dict(self.model.generator_losses(x, out, step))
                if self.lg is not None:
                    if text is None:
                        raise ValueError("language-guided training needs text features in the batch")
                    terms.update({f"lg_{k}": v for k, v in self.lg(out.z_q, text, reencode=self.reencode).items()})
            scale = x.shape[0] / n  # micro-batch losses are means: weight by share of the batch
            if i == len(chunks) - 1:
                with self.reduce_g.final_backward():
                    (sum(terms.values()) * scale).backward()
            else:
                (sum(terms.values()) * scale).backward()
            for k, v in terms.items():
                logged[k] = logged[k] + v.detach() * scale if k in logged else v.detach() * scale
            outputs.append((x, out))
        self.reduce_g.finish()
        self.opt_g.step()

        if self.opt_d is not None:
            self.opt_d.zero_grad(set_to_none=True)
            any_d = False
            for x, out in outputs:
                detached = TokenizerOutput(out.x_rec.detach(), out.quant)
                with self.execution.autocast():
                    d_terms = dict(self.model.discriminator_losses(x, detached, step))
                if not d_terms:
                    continue
                any_d = True
                scale = x.shape[0] / n
                (sum(d_terms.values()) * scale).backward()
                for k, v in d_terms.items():
                    logged[k] = logged[k] + v.detach() * scale if k in logged else v.detach() * scale
            if any_d:
                self.reduce_d.finish()  # the discriminator's losses are cheap: reduced after its backward
                self.opt_d.step()
        self.sync_state()
        logged["loss"] = torch.stack([v.float() for k, v in logged.items() if not k.startswith("disc")]).sum()
        return logged
