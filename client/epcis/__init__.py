"""GS1 EPCIS 2.0 support for rantai: validation, event hash IDs and event builders.

``rantai.client.epcis`` exposes:

* :func:`validate_event`, :func:`validate_document` and :class:`EventInvalid`
  (rantai's own validation rules, see ``docs/epcis.md``);
"""

from .validate import (
    EventInvalid,
    is_gs1_identifier,
    validate_document,
    validate_event,
)

__all__ = [
    "EventInvalid",
    "is_gs1_identifier",
    "validate_document",
    "validate_event",
]
