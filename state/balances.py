"""Payouts (SPEC "Payouts"), per sharer: the payable balance, and payouts of it.

A `SharerLedger` (key `sharer:<sharer_id>`) holds, per currency, the sharer's
payable balance: approvals, minus clawbacks (reversals of approved lines), minus
payouts. A payout pays it whole, or is `nothing_to_pay`. Only this sum needs
state; `pending` and `paid` follow from the outputs (the sink keeps them).

Order: credits come from line keys on every worker and payout requests straight
from the sequencer, so within one bytewax epoch they can arrive in any order.
Each carries its place in the log, `(step, phase, ident)`, and the ledger
buffers them and applies them sorted, only up to what it knows is complete:
`release(n)` applies the first `n` received (the flows pass what arrived by the
end of the last epoch; the plain loop, which is in log order, passes all).
Memory: a few integers per currency, and what one epoch brings.
"""

from __future__ import annotations

from state.messages import Credit, SharerMessage
from state.outputs import Output, payout, reject


def place(message: SharerMessage) -> tuple[int, int, str]:
    if isinstance(message, Credit):
        return message.step, message.phase, message.ident
    return message.step, 1, message.position


class SharerLedger:
    __slots__ = ("inbox", "payable", "sealed")

    def __init__(self) -> None:
        self.payable: dict[str, int] = {}
        self.inbox: list[SharerMessage] = []
        self.sealed = 0  # how many of `inbox` arrived in epochs that have ended

    def receive(self, message: SharerMessage) -> None:
        self.inbox.append(message)

    def seal(self) -> None:
        """An epoch has ended: everything received so far is complete."""
        self.sealed = len(self.inbox)

    def release(self, count: int | None = None) -> list[Output]:
        """Apply the first `count` received (all if None), in log order."""
        n = len(self.inbox) if count is None else count
        if n == 0:
            return []
        ready = sorted(self.inbox[:n], key=place)
        del self.inbox[:n]
        self.sealed = max(0, self.sealed - n)
        out: list[Output] = []
        for message in ready:
            out.extend(self._apply(message))
        return out

    def _apply(self, message: SharerMessage) -> list[Output]:
        payable = self.payable
        if isinstance(message, Credit):
            left = payable.get(message.currency, 0) + message.amount
            if left:
                payable[message.currency] = left
            else:
                payable.pop(message.currency, None)
            return []
        event = message.event
        amount = payable.get(event["currency"], 0)
        if amount <= 0:
            return [reject("nothing_to_pay", event, message.position)]
        del payable[event["currency"]]
        return [payout(event, amount)]

    def is_empty(self) -> bool:
        return not self.payable and not self.inbox
