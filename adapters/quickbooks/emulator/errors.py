"""The faults the emulated QBO answers with, by code.

Codes and wording follow what QBO is seen to return (Intuit's error-code page and SDK issue trackers); where
no source gave the exact code, the choice is marked *guess* so the adapter keeps routing on ``code`` ranges.
python-quickbooks maps codes to exceptions: 610 → ObjectNotFoundException, 2000–4999 → ValidationException,
5000–9999 → the base QuickbooksException.
"""

from __future__ import annotations

from dataclasses import dataclass

from .shapes import JsonDict, error_entry, fault_body


@dataclass
class QboFault(Exception):
    """A business or validation fault raised by the store; the server turns it into a ``Fault`` body."""

    code: str
    message: str
    detail: str = ""
    element: str = ""
    status: int = 400
    fault_type: str = "ValidationFault"

    def __str__(self) -> str:
        return f"{self.code} {self.message}: {self.detail}"

    def entry(self) -> JsonDict:
        """The ``Fault.Error`` item (used alone inside a batch item response)."""
        return error_entry(self.code, self.message, self.detail, self.element)

    def body(self) -> JsonDict:
        """The full response body."""
        return fault_body([self.entry()], self.fault_type)


def object_not_found(entity: str, entity_id: str) -> QboFault:
    """610: reading, updating or deleting an Id that does not exist (or was deleted)."""
    return QboFault(
        "610",
        "Object Not Found",
        f"Object Not Found : Something you're trying to use has been made inactive. Check the fields with "
        f"accounts, customers, items, vendors or employees. ({entity} Id={entity_id})",
    )


def invalid_reference(element: str, detail: str = "") -> QboFault:
    """2500: a ``...Ref`` naming nothing (QBO puts the JSON path in ``element``)."""
    return QboFault("2500", "Invalid Reference Id", detail or f"Invalid Reference Id : {element}", element)


def inactive_reference(element: str) -> QboFault:
    """2500 too: QBO reports a reference to an inactive name or account with the same code (seen in the
    PHP and .NET SDK issue trackers), distinguishable only by its Detail text."""
    return QboFault(
        "2500",
        "Invalid Reference Id",
        "Invalid Reference Id : Something you're trying to use has been made inactive. Check the fields with "
        "accounts, customers, items, vendors or employees.",
        element,
    )


def required_missing(element: str) -> QboFault:
    """2020: a mandatory field is absent."""
    return QboFault(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {element} is missing in the request",
        element,
    )


def invalid_property(detail: str, element: str = "") -> QboFault:
    """2010: unparseable JSON or a value of the wrong kind."""
    return QboFault("2010", "Request has invalid or unsupported property", detail, element)


def business_rule(detail: str, element: str = "") -> QboFault:
    """6000: QBO's catch-all business validation error."""
    return QboFault(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
        element,
    )


def amount_mismatch(supplied: str, expected: str) -> QboFault:
    """6070: a sales line whose Amount is not UnitPrice × Qty."""
    return QboFault(
        "6070",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: Amount is not equal to UnitPrice * Qty. Supplied value:{supplied}, "
        f"expected:{expected}",
        "Line.Amount",
    )


def duplicate_name(existing_id: str) -> QboFault:
    """6240: DisplayName (or Account/Item Name) already used, inactive records included."""
    return QboFault("6240", "Duplicate Name Exists Error", f"The name supplied already exists. : Id={existing_id}")


def duplicate_doc_number(doc_number: str, entity: str, existing_id: str) -> QboFault:
    """6140: a DocNumber another transaction of the kind has, in a company whose "warn if duplicate" setting
    is on (python-quickbooks raises the base QuickbooksException for it, as for every 5000–9999 code)."""
    return QboFault(
        "6140",
        "Duplicate Document Number Error",
        f"Duplicate Document Number Error : You must specify a different number. This number has already been "
        f"used. DocNumber={doc_number} is assigned to TxnType={entity} with TxnId={existing_id}",
        "DocNumber",
    )


def stale_object(entity: str, entity_id: str, current: str, supplied: str) -> QboFault:
    """5010: the SyncToken sent is not the current one."""
    return QboFault(
        "5010",
        "Stale Object Error",
        f"Stale Object Error : You and {entity} {entity_id} were working on this at the same time. "
        f"{entity} {entity_id} finished before you did, so your work was not saved. "
        f"(SyncToken supplied {supplied}, current {current})",
    )


def unsupported(detail: str) -> QboFault:
    """500: an operation QBO (or this emulator) does not offer for the entity."""
    return QboFault("500", "Unsupported Operation", detail)


def query_parse_error(detail: str) -> QboFault:
    """4000: QBO's QueryParserError."""
    return QboFault("4000", "Error parsing query", f"QueryParserError: {detail}")


def closed_period(closing_date: str) -> QboFault:
    """6210: a transaction dated on or before the company's closing date ("Close the books") is created,
    changed, deleted or voided through the API. Message and Detail are the ones Intuit's "Handling common
    errors" page gives; real QBO's Detail does not name the closing date — the emulator appends it (for
    people reading test output), so a client must not parse it out of the Detail."""
    return QboFault(
        "6210",
        "Account Period Closed",
        "The account period has closed and the account books cannot be updated through the QBO Services API. "
        f"Please use the QBO website to make these changes. (Closing date: {closing_date})",
    )


def item_refused(code: str, detail: str) -> QboFault:
    """An injected refusal of one batch item (faults.py ``item_fault``): 6000, QBO's catch-all business
    validation error, unless the rule names another code."""
    return QboFault(code, "A business validation error has occurred while processing your request", detail)
