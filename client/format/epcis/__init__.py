"""GS1 EPCIS 2.0 support for rantai: validation, event hash IDs and event builders.

* :func:`validate_event`, :func:`validate_document`, :class:`EventInvalid`:
  rantai's own validation rules (``docs/epcis.md``);
* :func:`event_hash_id`, :func:`event_prehash`: the CBV 2.0 event hash ID;
* builders (:func:`commission`, :func:`pack`, :func:`ship`, :func:`receive`,
  :func:`transform`, :func:`sell`) and GS1 identifier helpers (:func:`sgtin`,
  :func:`sscc`, :func:`sgln`, ...), so that events can be written without
  knowing EPCIS by heart.
"""

from .builders import (
    EPCIS_CONTEXT,
    JAKARTA,
    biz_transaction_id,
    commission,
    digital_link,
    epcis_document,
    gdti,
    giai,
    grai,
    lgtin,
    pack,
    pgln,
    receive,
    sell,
    sgln,
    sgtin,
    ship,
    sscc,
    transform,
    unpack,
)
from .event_hash import event_hash_id, event_prehash
from .validate import (
    EventInvalid,
    document_events,
    is_gs1_identifier,
    validate_document,
    validate_event,
)

__all__ = [
    "EPCIS_CONTEXT",
    "JAKARTA",
    "biz_transaction_id",
    "commission",
    "digital_link",
    "epcis_document",
    "gdti",
    "giai",
    "grai",
    "lgtin",
    "pack",
    "pgln",
    "receive",
    "sell",
    "sgln",
    "sgtin",
    "ship",
    "sscc",
    "transform",
    "unpack",
    "EventInvalid",
    "document_events",
    "event_hash_id",
    "event_prehash",
    "is_gs1_identifier",
    "validate_document",
    "validate_event",
]
