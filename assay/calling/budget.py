"""The spending limit of a run (``cost.max_usd``), shared by every model of it."""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Budget:
    """Spend so far across models, priced by ``price(model, prompt, completion, cached) -> usd``.

    ``price`` must be linear in the token counts (token prices are), so that a shard is priced
    once from its totals rather than call by call. ``max_usd`` None is unlimited; ``stopped``
    says why the engine stopped calling, once it has.
    """

    max_usd: float | None = None
    price: Callable[[str, int, int, int], float] | None = None
    spent: float = 0.0
    stopped: str | None = None

    def cost(self, model: str, prompt: int, completion: int, cached: int) -> float:
        return 0.0 if self.price is None else self.price(model, prompt, completion, cached)

    def charge(self, model: str, prompt: int, completion: int, cached: int) -> float:
        usd = self.cost(model, prompt, completion, cached)
        self.spent += usd
        return usd

    def allows(self, next_usd: float) -> bool:
        return self.max_usd is None or self.spent + next_usd <= self.max_usd

    def check_next(self, model: str, per_item_usd: float, items: int) -> bool:
        """Whether ``items`` more calls at ``per_item_usd`` fit; if not, stop every model, saying why."""
        next_usd = per_item_usd * items
        if self.stopped or not self.allows(next_usd):
            self.stopped = self.stopped or (
                f"cost.max_usd {self.max_usd} would be exceeded by the next shard of {model} "
                f"(spent {self.spent:.4f} USD, next shard ≈ {next_usd:.4f} USD)"
            )
            return False
        return True
