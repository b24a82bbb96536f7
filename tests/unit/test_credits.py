"""Prepaid credit: burn order, expiry, balances at an instant, with hand-worked figures."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.credits import Charge, CreditGrant, EntryKind, Wallet, granted, invoice_charges
from meterline.exceptions import InvalidQuery

NOV_1, NOV_5, NOV_10 = (datetime(2026, 11, day, tzinfo=UTC) for day in (1, 5, 10))
NOV_19, NOV_20, NOV_21 = (datetime(2026, 11, day, tzinfo=UTC) for day in (19, 20, 21))
EUR = "EUR"


def grant(grant_id: str, amount: str, **terms: object) -> CreditGrant:
    return CreditGrant(grant_id, "cust-1", EUR, Decimal(amount), terms.pop("effective_at", NOV_1), **terms)  # type: ignore[arg-type]


def wallet(*grants: CreditGrant) -> Wallet:
    return Wallet.of(grants, [granted(each) for each in grants])


GRANTS = (
    grant("a-free-forever", "10"),
    grant("b-backup-only", "5", scope=frozenset({"backup"}), priority=5, expires_at=datetime(2026, 12, 1, tzinfo=UTC)),
    grant("c-paid-soon", "8", paid=True, paid_amount=Decimal("7.50"), expires_at=NOV_20),
    grant("d-free-soon", "4", expires_at=NOV_20),
    grant("e-later-priority", "3", priority=1),
)


def test_a_charge_burns_scope_then_priority_then_expiry_then_free_then_oldest():
    """20.00 of backup: b (scoped to backup) 5, then priority 0 by soonest expiry, free before
    paid: d 4, c 8, then a (never expires) 3 of its 10; e (priority 1) is not reached.
    Left: a 7 + e 3 = 10.00."""
    credit = wallet(*GRANTS)
    burn = credit.burn(Charge("charge-1", EUR, Decimal("20.00"), NOV_10, product="backup", meter="xaas_units"))
    taken = [(entry.grant_id, entry.amount) for entry in burn.entries]
    assert taken == [
        ("b-backup-only", Decimal("-5")),
        ("d-free-soon", Decimal("-4")),
        ("c-paid-soon", Decimal("-8")),
        ("a-free-forever", Decimal("-3.00")),
    ]
    assert burn.uncovered == 0
    assert credit.balance(NOV_10) == {EUR: Decimal("10.00")}


def test_a_grant_scoped_elsewhere_is_not_burned():
    """12.00 of VM usage: b covers only backup; d 4 then c 8 pay it all."""
    credit = wallet(*GRANTS)
    burn = credit.burn(Charge("charge-2", EUR, Decimal("12.00"), NOV_10, product="vm", meter="vcpu_hours"))
    assert [(entry.grant_id, entry.amount) for entry in burn.entries] == [
        ("d-free-soon", Decimal("-4")),
        ("c-paid-soon", Decimal("-8")),
    ]
    assert credit.remaining(NOV_10)["b-backup-only"] == 5


def test_what_no_grant_covers_is_left_to_bill():
    """40.00 against 30.00 of credit in force (b does not cover VMs: 25 of it burns): 15.00
    uncovered. Before the grants take effect, and in another currency, nothing is covered."""
    credit = wallet(*GRANTS)
    assert credit.burn(Charge("big", EUR, Decimal("40.00"), NOV_10, product="vm")).uncovered == Decimal("15.00")
    assert credit.burn(Charge("early", EUR, Decimal("1"), datetime(2026, 10, 31, tzinfo=UTC))).uncovered == 1
    assert credit.burn(Charge("francs", "CHF", Decimal("2"), NOV_10)).uncovered == 2


def test_a_grant_expires_with_what_it_still_holds_and_the_balance_is_known_at_any_instant():
    """c (8, paid) and a (10): 5.00 at Nov 10 burns c first (it expires sooner): c 3 left.
    Nov 19: 13.00; Nov 20, c expired: 10.00; the expiry records c's 3 at Nov 20; and on
    Nov 5 the balance was still 18.00."""
    credit = wallet(grant("c", "8", paid=True, expires_at=NOV_20), grant("a", "10"))
    credit.burn(Charge("charge-3", EUR, Decimal("5.00"), NOV_10))
    assert credit.balance(NOV_19) == {EUR: Decimal("13.00")}
    assert credit.balance(NOV_20) == {EUR: Decimal("10.00")}
    expired = credit.expire(NOV_21)
    assert [(e.grant_id, e.kind, e.amount, e.at) for e in expired] == [
        ("c", EntryKind.EXPIRY, Decimal("-3.00"), NOV_20)
    ]
    assert credit.expire(NOV_21) == [], "an expiry is recorded once"
    assert credit.balance(NOV_21) == {EUR: Decimal("10.00")}
    assert credit.balance(NOV_5) == {EUR: Decimal("18")}


def test_the_same_charge_burns_once():
    credit = wallet(grant("a", "10"))
    assert credit.burn(Charge("charge-4", EUR, Decimal("2.50"), NOV_10)).uncovered == 0
    again = credit.burn(Charge("charge-4", EUR, Decimal("2.50"), NOV_10))
    assert (again.entries, again.uncovered) == ((), 0)
    assert credit.balance(NOV_10) == {EUR: Decimal("7.50")}


@pytest.mark.parametrize(
    "terms",
    [
        {"amount": Decimal(0)},
        {"amount": Decimal("-1")},
        {"expires_at": NOV_1},
        {"effective_at": datetime(2026, 11, 1)},  # noqa: DTZ001 - a time without its zone is refused
        {"paid_amount": Decimal("1")},  # a free grant has nothing paid for it
    ],
)
def test_a_grant_that_cannot_be_is_refused_with_a_reason(terms):
    fields = {"amount": Decimal("10"), "effective_at": NOV_1, **terms}
    with pytest.raises(InvalidQuery, match="grant g:"):
        CreditGrant("g", "cust-1", EUR, fields.pop("amount"), fields.pop("effective_at"), **fields)


def test_a_negative_charge_is_not_a_burn():
    with pytest.raises(InvalidQuery, match="negative"):
        wallet(grant("a", "10")).burn(Charge("refund", EUR, Decimal("-1"), NOV_10))


def test_a_charge_that_grows_or_shrinks_records_only_the_difference():
    """a 10 (priority 0) and e 3 (priority 1). An hour's usage burns 8.00 from a; a late event
    brings it to 12.00: a's last 2, then e 2; to 14.50: e's last 1 and 1.50 left to bill. A
    correction to 9.00 gives back 5.50: the 1.50 left to bill first, then e's 3 (last in burn
    order), then 1.00 to a. What the charge took is always its amount: 10 + 3 - 9 = 4.00 left."""
    credit = wallet(grant("a", "10"), grant("e", "3", priority=1))
    first = credit.burn(Charge("hour-10", EUR, Decimal("8.00"), NOV_10))
    assert [(e.grant_id, e.kind, e.amount) for e in first.entries] == [("a", EntryKind.BURN, Decimal("-8.00"))]
    late = credit.burn(Charge("hour-10", EUR, Decimal("12.00"), NOV_10))
    assert [(e.grant_id, e.kind, e.amount) for e in late.entries] == [
        ("a", EntryKind.ADJUSTMENT, Decimal("-2.00")),
        ("e", EntryKind.ADJUSTMENT, Decimal("-2.00")),
    ]
    over = credit.burn(Charge("hour-10", EUR, Decimal("14.50"), NOV_10))
    assert over.uncovered == Decimal("1.50")
    assert [(e.grant_id, e.kind, e.amount) for e in over.entries] == [
        ("e", EntryKind.ADJUSTMENT, Decimal("-1")),
        ("", EntryKind.UNCOVERED, Decimal("-1.50")),
    ]
    corrected = credit.burn(Charge("hour-10", EUR, Decimal("9.00"), NOV_10))
    assert [(e.grant_id, e.kind, e.amount) for e in corrected.entries] == [
        ("", EntryKind.UNCOVERED, Decimal("1.50")),
        ("e", EntryKind.ADJUSTMENT, Decimal("3")),
        ("a", EntryKind.ADJUSTMENT, Decimal("1.00")),
    ]
    assert corrected.uncovered == Decimal("-1.50")
    assert credit.balance(NOV_10) == {EUR: Decimal("4.00")}
    assert credit.burn(Charge("hour-10", EUR, Decimal("9.00"), NOV_10)).entries == ()


def test_a_late_charge_never_spends_what_later_burns_a_void_or_an_expiry_took():
    """a holds 10. Nov 10 burns 8 (2 left); a late charge dated Nov 5 of 5.00 finds 10 then but
    only 2 now: it takes 2, 3.00 left to bill. b (5) is voided on Nov 10: a late Nov 5 charge
    takes nothing from it. c (4, expiring Nov 20) had its 4 recorded as expired: a late charge
    dated Nov 19 takes nothing. No grant goes below zero."""
    credit = wallet(grant("a", "10"))
    credit.burn(Charge("nov-10", EUR, Decimal("8"), NOV_10))
    assert credit.burn(Charge("late", EUR, Decimal("5.00"), NOV_5)).uncovered == Decimal("3.00")
    assert credit.balance(NOV_20) == {EUR: Decimal("0")}

    voided = wallet(grant("b", "5"))
    assert [e.amount for e in voided.void("b", NOV_10)] == [Decimal("-5")]
    assert voided.burn(Charge("late", EUR, Decimal("1"), NOV_5)).uncovered == 1
    assert voided.granted(NOV_19) == {}, "a voided grant no longer counts as granted"

    expiring = wallet(grant("c", "4", expires_at=NOV_20))
    expiring.expire(NOV_21)
    assert expiring.burn(Charge("late", EUR, Decimal("1"), NOV_19)).uncovered == 1
    assert all(
        sum(e.amount for e in w.entries if e.grant_id == g) >= 0 for w in (credit, voided, expiring) for g in w.grants
    )


def test_voiding_a_grant_before_it_takes_effect_takes_all_of_it():
    credit = wallet(grant("future", "10", effective_at=NOV_20))
    [entry] = credit.void("future", NOV_10)
    assert (entry.amount, entry.at) == (Decimal("-10"), NOV_20)
    assert credit.balance(NOV_21) == {EUR: Decimal("0")}


def test_what_is_left_to_bill_and_held_follow_every_entry_recorded_after_a_first_look():
    """10.00 granted. Charge x 3.00 on the 5th, then y 12.00 on the 10th: 7.00 paid, 5.00 left
    to bill, 0 held. As of the 5th, 10.00 - 3.00 = 7.00 was held. y shrinks to 4.00: the 8.00
    given back first clears what was left to bill (5.00), then returns 3.00 to the grant:
    10.00 - 3.00 - 4.00 = 3.00 held, nothing to bill. Entries are numbered per charge."""
    credit = wallet(grant("a", "10"))
    assert credit.uncovered() == 0 and credit.balance(NOV_10) == {EUR: Decimal("10")}  # looked at once
    credit.burn(Charge("x", EUR, Decimal("3.00"), NOV_5))
    credit.burn(Charge("y", EUR, Decimal("12.00"), NOV_10))
    assert (credit.uncovered(), credit.balance(NOV_10)[EUR]) == (Decimal("5.00"), Decimal("0.00"))
    assert credit.balance(NOV_5) == {EUR: Decimal("7.00")}
    credit.burn(Charge("y", EUR, Decimal("4.00"), NOV_10))
    assert (credit.uncovered(), credit.balance(NOV_10)[EUR]) == (Decimal("0.00"), Decimal("3.00"))
    assert [e.entry_id for e in credit.entries if e.reference == "y"] == ["y/0", "y/1", "y/2", "y/3"]


def test_a_copy_burns_on_its_own_and_leaves_the_wallet_it_came_from_as_it_was():
    """10.00 granted; x burns 3.00 on the wallet (7.00 held). On a copy, x grows to 5.00 (2.00
    more: 5.00 held, entries x/0, x/1), y burns 4.00 (1.00 held). The wallet still holds 7.00,
    has x/0 alone, and burning y on it numbers y/0 from scratch: 3.00 held."""
    credit = wallet(grant("a", "10"))
    credit.burn(Charge("x", EUR, Decimal("3.00"), NOV_5))
    copied = credit.copy()
    copied.burn(Charge("x", EUR, Decimal("5.00"), NOV_5))
    assert copied.balance(NOV_10) == {EUR: Decimal("5.00")}
    copied.burn(Charge("y", EUR, Decimal("4.00"), NOV_10))
    assert copied.balance(NOV_10) == {EUR: Decimal("1.00")}
    assert [e.entry_id for e in copied.entries if e.reference == "x"] == ["x/0", "x/1"]
    assert credit.balance(NOV_10) == {EUR: Decimal("7.00")}
    assert [e.entry_id for e in credit.entries if e.reference == "x"] == ["x/0"]
    credit.burn(Charge("y", EUR, Decimal("4.00"), NOV_10))
    assert credit.balance(NOV_10) == {EUR: Decimal("3.00")} and credit.entries[-1].entry_id == "y/0"


def test_an_expired_grant_is_taken_once_whether_its_void_or_its_expiry_comes_first():
    """1.00 in force from the 1st to the 5th, untouched: voided on the 10th it holds nothing, so
    only its expiry takes the 1.00; the other way round, the void takes nothing either."""
    voided_first = wallet(grant("a", "1.00", expires_at=NOV_5))
    assert voided_first.void("a", NOV_10) == []
    assert [e.amount for e in voided_first.expire(NOV_10)] == [Decimal("-1.00")]
    expired_first = wallet(grant("a", "1.00", expires_at=NOV_5))
    expired_first.expire(NOV_10)
    assert expired_first.void("a", NOV_10) == []
    for credit in (voided_first, expired_first):
        assert sum(e.amount for e in credit.entries) == 0


def test_what_a_charge_left_to_bill_is_paid_by_credit_granted_later_once():
    """2.00 granted; x 5.00 on the 10th takes 2.00 and leaves 3.00 to bill. 10.00 granted later,
    backdated to the 1st: burning x again (same amount) takes the 3.00 from it and gives the 3.00
    left to bill back: nothing to bill, 7.00 held. Burning x once more records nothing."""
    credit = wallet(grant("a", "2.00"))
    credit.burn(Charge("x", EUR, Decimal("5.00"), NOV_10))
    assert credit.uncovered() == Decimal("3.00")
    later = grant("b", "10.00")
    credit.grants[later.grant_id] = later
    credit.record([granted(later)])
    paid = credit.burn(Charge("x", EUR, Decimal("5.00"), NOV_10))
    assert [(e.grant_id, e.kind, e.amount) for e in paid.entries] == [
        ("b", EntryKind.ADJUSTMENT, Decimal("-3.00")),
        ("", EntryKind.UNCOVERED, Decimal("3.00")),
    ]
    assert (paid.uncovered, credit.uncovered(), credit.balance(NOV_10)) == (
        Decimal("-3.00"),
        Decimal("0.00"),
        {EUR: Decimal("7.00")},
    )
    assert credit.burn(Charge("x", EUR, Decimal("5.00"), NOV_10)).entries == ()


def test_what_was_granted_counts_a_voided_grant_until_its_void():
    """10.00 and 4.00 granted from the 1st; the 10.00 is voided on the 10th. On the 5th the
    grants in force had given 14.00; from the 10th, 4.00."""
    credit = wallet(grant("a", "10.00"), grant("b", "4.00"))
    credit.void("a", NOV_10)
    assert credit.granted(NOV_5) == {EUR: Decimal("14.00")}
    assert credit.granted(NOV_10) == {EUR: Decimal("4.00")}


def test_an_invoice_is_charged_on_credit_in_whole_minor_units_that_add_up_to_what_it_says_credit_paid():
    """A yen invoice: fees 7,000 and usage 43 (exact 43) with 10 % tax: 7,700 + 47.3 exact, 7,747
    in all (7,747.3 rounded once). Shared by the exact figures: 7,747 x 7,700 / 7,747.3 =
    7,699.70 and 47.30 -> 7,699 + 47 = 7,746, and the yen left over goes to the larger remainder
    (0.70): 7,700 and 47. A wallet holding 913.42 yen (1,000 less 86.58 of usage burned exactly)
    pays 913 of them, whole yen, and keeps the 0.42."""
    charges = invoice_charges(
        "inv", "JPY", [("fee", "", Decimal(7000)), ("backup", "xaas_units", Decimal(43))],
        Decimal(0), Decimal(10), False, Decimal(7747), NOV_21,
    )  # fmt: skip
    assert {c.product: c.amount for c in charges} == {"fee": Decimal(7700), "backup": Decimal(47)}
    yen = CreditGrant("g", "cust-1", "JPY", Decimal(1000), NOV_1)
    held = Wallet.of([yen], [granted(yen)])
    held.burn(Charge("usage/hour", "JPY", Decimal("86.58"), NOV_5))
    paid = [held.burn(charge) for charge in charges]
    taken = [e.amount for e in held.entries if e.reference.startswith("invoice/") and e.grant_id]
    assert sum(taken) == -913 and sum(burn.uncovered for burn in paid) == Decimal(7747 - 913)
    assert held.balance(NOV_21) == {"JPY": Decimal("0.42")}


def test_an_invoice_charged_on_credit_never_takes_more_than_its_total():
    """Two groups of 0.004 EUR: 0.008 exact rounds to 0.01, shared 0.01 and 0.00; an invoice whose
    total says 0.00 (its lines rounded each) charges nothing."""
    lines = [("a", "", Decimal("0.004")), ("b", "", Decimal("0.004"))]
    shared = invoice_charges("inv", EUR, lines, Decimal(0), Decimal(0), False, Decimal("0.01"), NOV_21)
    assert [c.amount for c in shared] == [Decimal("0.01"), Decimal("0.00")]
    nothing = invoice_charges("inv", EUR, lines, Decimal(0), Decimal(0), False, Decimal("0.00"), NOV_21)
    assert [c.amount for c in nothing] == [Decimal(0), Decimal(0)]
