"""How the web pages write dollar amounts: one helper, behind the `usd` template filter.

The rule: what use costs (a request, spend per day, per model or over a period) is written to the
micro-dollar the ledger bills in, always six decimals, so a column of costs lines up: $0.000043,
$0.499058, $12.500000. Money held (balance, holds, purchases, credit entries) is written to the
cent: $0.50, $1,204.00, and a non-zero amount under half a cent as <$0.01, never as $0.00.
Prices per million tokens are written to the cent, with more decimals only when the price has them.
"""

from __future__ import annotations

from decimal import Decimal

MICROS_PER_CENT = 10_000


def usd(micros: int, cents: bool = False) -> str:
    """Micro-dollars as text: six decimals for a cost, or to the cent (`cents=True`) for money held."""
    sign = "-" if micros < 0 else ""
    amount = abs(int(micros))
    if not cents:
        whole, fraction = divmod(amount, 1_000_000)
        return f"{sign}${whole:,}.{fraction:06d}"
    rounded = (amount + MICROS_PER_CENT // 2) // MICROS_PER_CENT  # half up
    if rounded == 0 and amount:
        return f"{sign}<$0.01"
    whole, fraction = divmod(rounded, 100)
    return f"{sign}${whole:,}.{fraction:02d}"


def usd_price(per_1m: float) -> str:
    """A price per million tokens: to the cent, with more decimals only when the price has them."""
    exact = Decimal(str(per_1m)).normalize()
    places = max(2, -exact.as_tuple().exponent)
    return f"${exact:,.{places}f}"
