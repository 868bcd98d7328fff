"""Customers, vendors and names through the real python-quickbooks client: uniqueness, queries, updates."""

from __future__ import annotations

import pytest
from emulator_harness import Connection
from quickbooks import QuickBooks
from quickbooks.exceptions import ObjectNotFoundException, QuickbooksException, UnsupportedException
from quickbooks.objects.base import EmailAddress
from quickbooks.objects.customer import Customer
from quickbooks.objects.vendor import Vendor


def new_customer(qb: QuickBooks, name: str, email: str | None = None) -> Customer:
    customer = Customer()
    customer.DisplayName = name
    customer.GivenName = name.split()[0]
    if email:
        customer.PrimaryEmailAddr = EmailAddress()
        customer.PrimaryEmailAddr.Address = email
    return customer.save(qb=qb)


def test_create_customer_assigns_id_synctoken_metadata(qb: QuickBooks, connection: Connection) -> None:
    saved = new_customer(qb, "Ada Lovelace", "ada@example.com")

    assert saved.Id and int(saved.Id) > 0
    assert saved.SyncToken == "0"
    assert saved.MetaData["CreateTime"]  # python-quickbooks keeps Customer.MetaData as a dict
    fetched = Customer.get(saved.Id, qb=qb)
    assert fetched.DisplayName == "Ada Lovelace"
    assert fetched.PrimaryEmailAddr.Address == "ada@example.com"
    assert fetched.Active is True
    assert [c["DisplayName"] for c in connection.state()["entities"]["Customer"]] == ["Ada Lovelace"]


@pytest.mark.parametrize("clash", ["Ada Lovelace", "ADA LOVELACE", "ada lovelace"])
def test_duplicate_display_name_is_6240_with_existing_id(qb: QuickBooks, clash: str) -> None:
    first = new_customer(qb, "Ada Lovelace")

    with pytest.raises(QuickbooksException) as raised:
        new_customer(qb, clash)

    assert raised.value.error_code == 6240
    assert raised.value.message == "Duplicate Name Exists Error"
    assert f"Id={first.Id}" in raised.value.detail


def test_display_name_clashes_with_vendor_and_inactive_customer(qb: QuickBooks, connection: Connection) -> None:
    vendor = connection.seed("Vendor", {"DisplayName": "Acme Trucks"})
    inactive = connection.seed("Customer", {"DisplayName": "Gone Away", "Active": False})

    with pytest.raises(QuickbooksException) as raised:
        new_customer(qb, "acme trucks")
    assert raised.value.error_code == 6240
    assert f"Id={vendor['Id']}" in raised.value.detail

    with pytest.raises(QuickbooksException) as raised:
        new_customer(qb, "Gone Away")
    assert f"Id={inactive['Id']}" in raised.value.detail

    # The same rule holds from the vendor side.
    new_customer(qb, "Bea Smith")
    vendor_obj = Vendor()
    vendor_obj.DisplayName = "Bea Smith"
    with pytest.raises(QuickbooksException) as raised:
        vendor_obj.save(qb=qb)
    assert raised.value.error_code == 6240


@pytest.mark.parametrize("bad", ["Smith: John", "Tab\tName", "New\nLine"])
def test_display_name_rejects_colon_tab_newline(qb: QuickBooks, bad: str) -> None:
    with pytest.raises(QuickbooksException) as raised:
        new_customer(qb, bad)
    assert raised.value.error_code == 6000


def test_query_by_display_name_with_apostrophe(qb: QuickBooks) -> None:
    obrien = new_customer(qb, "Pat O'Brien")
    new_customer(qb, "Pat OBrien")

    by_filter = Customer.filter(DisplayName="Pat O'Brien", qb=qb)
    by_where = Customer.where("DisplayName = 'Pat O\\'Brien'", qb=qb)
    by_like = Customer.where("DisplayName LIKE '%O\\'Bri%'", qb=qb)

    assert [c.Id for c in by_filter] == [obrien.Id]
    assert [c.Id for c in by_where] == [obrien.Id]
    assert [c.Id for c in by_like] == [obrien.Id]


def test_backslash_in_name_round_trips_through_a_query(qb: QuickBooks) -> None:
    saved = new_customer(qb, "Back\\slash Movers")

    assert [c.Id for c in Customer.where("DisplayName = 'Back\\\\slash Movers'", qb=qb)] == [saved.Id]
    # python-quickbooks leaves backslashes unescaped; the emulator keeps a lone backslash literally.
    assert [c.Id for c in Customer.filter(DisplayName="Back\\slash Movers", qb=qb)] == [saved.Id]


def test_query_by_primary_email_and_in_list(qb: QuickBooks) -> None:
    one = new_customer(qb, "One Person", "one@example.com")
    two = new_customer(qb, "Two Person", "two@example.com")
    new_customer(qb, "Three Person", "three@example.com")

    assert [c.Id for c in Customer.filter(PrimaryEmailAddr="two@example.com", qb=qb)] == [two.Id]
    chosen = Customer.choose([one.Id, two.Id], qb=qb)
    assert sorted(c.Id for c in chosen) == sorted([one.Id, two.Id])
    assert Customer.filter(PrimaryEmailAddr="nobody@example.com", qb=qb) == []


def test_paging_beyond_100_with_startposition_maxresults(qb: QuickBooks, connection: Connection) -> None:
    for n in range(150):
        connection.seed("Customer", {"DisplayName": f"Customer {n:03d}"})

    default_page = Customer.where("", qb=qb)  # no MAXRESULTS: QBO stops at 100
    assert len(default_page) == 100

    seen: list[str] = []
    start = 1
    while True:
        page = Customer.where("", order_by="DisplayName", start_position=start, max_results=40, qb=qb)
        seen += [c.DisplayName for c in page]
        if len(page) < 40:
            break
        start += 40
    assert seen == [f"Customer {n:03d}" for n in range(150)]
    assert Customer.count(qb=qb) == 150
    assert Customer.count("DisplayName LIKE 'Customer 1%'", qb=qb) == 50

    raw = qb.query("SELECT * FROM Customer ORDERBY DisplayName DESC STARTPOSITION 101 MAXRESULTS 1000")
    assert raw["QueryResponse"]["startPosition"] == 101
    assert raw["QueryResponse"]["maxResults"] == 50
    assert raw["QueryResponse"]["Customer"][0]["DisplayName"] == "Customer 049"


def test_inactive_customers_hidden_unless_active_is_queried(qb: QuickBooks, connection: Connection) -> None:
    active = new_customer(qb, "Still Here")
    gone = new_customer(qb, "Moved Away")
    connection.admin("POST", f"/realms/{connection.realm_id}/records/Customer/{gone.Id}/deactivate")

    assert [c.Id for c in Customer.all(qb=qb)] == [active.Id]
    assert [c.Id for c in Customer.filter(Active=False, qb=qb)] == [gone.Id]
    assert Customer.count("Active IN (true, false)", qb=qb) == 2
    assert Customer.get(gone.Id, qb=qb).Active is False  # reads still find it


def test_customer_cannot_be_deleted_only_made_inactive(qb: QuickBooks, connection: Connection) -> None:
    saved = new_customer(qb, "Keep Me")

    with pytest.raises(UnsupportedException):
        qb.delete_object("Customer", f'{{"Id": "{saved.Id}", "SyncToken": "0"}}')

    result = qb.update_object("Customer", f'{{"Id": "{saved.Id}", "SyncToken": "0", "sparse": true, "Active": false}}')
    assert result["Customer"]["Active"] is False
    assert result["Customer"]["SyncToken"] == "1"
    assert result["Customer"]["DisplayName"] == "Keep Me"  # sparse: untouched fields kept


def test_stale_synctoken_is_5010_and_full_update_replaces(qb: QuickBooks) -> None:
    saved = new_customer(qb, "Version One", "v1@example.com")
    copy_a = Customer.get(saved.Id, qb=qb)
    copy_b = Customer.get(saved.Id, qb=qb)

    copy_a.CompanyName = "A Moving Co"
    updated = copy_a.save(qb=qb)
    assert updated.SyncToken == "1"

    copy_b.CompanyName = "B Moving Co"
    with pytest.raises(QuickbooksException) as raised:
        copy_b.save(qb=qb)
    assert raised.value.error_code == 5010
    assert "Stale Object Error" in raised.value.message

    # A full update without PrimaryEmailAddr clears it (QBO's full-update semantics).
    fresh = Customer.get(saved.Id, qb=qb)
    fresh.PrimaryEmailAddr = None
    assert fresh.save(qb=qb).PrimaryEmailAddr is None
    assert Customer.get(saved.Id, qb=qb).CompanyName == "A Moving Co"


def test_read_missing_is_object_not_found(qb: QuickBooks) -> None:
    with pytest.raises(ObjectNotFoundException) as raised:
        Customer.get("999999", qb=qb)
    assert raised.value.error_code == 610


def test_query_parse_error_and_unknown_entity_are_validation_faults(connection: Connection) -> None:
    bad = connection.api(
        "POST",
        "/query",
        data="SELECT * FROM Customer WHERE DisplayName = 'unterminated",
        headers={"Content-Type": "application/text"},
    )
    assert bad.status_code == 400
    assert bad.json()["Fault"]["Error"][0]["code"] == "4000"

    unknown = connection.api(
        "POST", "/query", data="SELECT * FROM Nonsense", headers={"Content-Type": "application/text"}
    )
    assert unknown.status_code == 400
    assert unknown.json()["Fault"]["type"] == "ValidationFault"


def test_seeded_chart_of_accounts_and_companyinfo(qb: QuickBooks) -> None:
    accounts = qb.query("SELECT * FROM Account MAXRESULTS 1000")["QueryResponse"]["Account"]
    by_name = {a["Name"]: a for a in accounts}
    assert by_name["Undeposited Funds"]["AccountSubType"] == "UndepositedFunds"
    assert by_name["Checking"]["AccountType"] == "Bank"
    assert by_name["Accounts Receivable (A/R)"]["AccountType"] == "Accounts Receivable"
    assert by_name["Services"]["AccountType"] == "Income"
    items = qb.query("SELECT * FROM Item WHERE Name = 'Services'")["QueryResponse"]["Item"]
    assert items[0]["Type"] == "Service"
    assert items[0]["IncomeAccountRef"]["value"] == by_name["Services"]["Id"]
    methods = {m["Name"] for m in qb.query("SELECT * FROM PaymentMethod")["QueryResponse"]["PaymentMethod"]}
    assert {"Cash", "Check", "Credit Card"} <= methods

    info = qb.get(f"{qb.api_url}/company/{qb.company_id}/companyinfo/{qb.company_id}")
    assert info["CompanyInfo"]["CompanyName"] == "Mover & Sons"
