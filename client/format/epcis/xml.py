"""EPCIS XML documents as the JSON-LD events rantai signs: EPCIS 2.0 XML, and 1.2 XML where a mapping exists.

Why in the format: an event hash ID does not depend on the syntax (CBV 2.0), so anyone holding the XML a
partner sent (an auditor too) can find the ledger's record of each event by mapping it here and hashing.

The mapping is structural (lxml parses; nothing is fetched, no DTD or entity is loaded), field by field
as the EPCIS 2.0 XML and JSON bindings define them:

* standard elements become JSON fields: EPC lists as lists of strings, quantity lists as
  ``{epcClass, quantity, uom}``, ``bizTransaction``/``source``/``destination`` with their ``type``
  attribute, sensor metadata and reports from their attributes (numbers and booleans typed), errorDeclaration
  with ``correctiveEventIDs``, persistentDisposition ``set``/``unset`` lists;
* CBV values written as URNs or GS1 web URIs (``urn:epcglobal:cbv:bizstep:receiving``) become the bare
  terms the JSON binding requires (``receiving``) when they are CBV 2.0 terms; the hash ID is the same;
* elements and attributes in other namespaces are user extensions, keyed ``prefix:local`` with the prefix
  declared in the document's ``@context`` (the EPCIS context's own prefixes, such as ``cbvmda``, are reused,
  not redefined); values are text, typed when ``xsi:type`` says ``xsd:integer``/``decimal``/``double``/
  ``boolean``, objects when they have child elements, lists when a key repeats;
* EPCIS 1.2: ``<extension>`` wrappers (events and fields added after 1.0) are unwrapped, and the 1.2
  namespace is accepted; what 1.2 had no equivalent for does not arise.

``xml_document(data)`` returns an EPCIS 2.0 JSON-LD ``EPCISDocument`` (``validate_document`` then
applies rantai's rules). ``XmlInvalid`` names the element path and the rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .builders import EPCIS_CONTEXT
from .event_hash import DEFAULT_PREFIXES
from .validate import (
    BIZ_STEPS,
    BIZ_TRANSACTION_TYPES,
    COMPONENTS,
    DISPOSITIONS,
    ERROR_REASONS,
    MEASUREMENT_TYPES,
    SENSOR_ALERT_TYPES,
    SOURCE_DEST_TYPES,
    EventInvalid,
)

__all__ = ["XmlInvalid", "xml_document", "EPCIS_XML_NAMESPACES"]

EPCIS_XML_NAMESPACES = ("urn:epcglobal:epcis:xsd:2", "urn:epcglobal:epcis:xsd:1")
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_EVENT_TYPES = frozenset({"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent",
                          "AssociationEvent"})
_EPC_LISTS = frozenset({"epcList", "childEPCs", "inputEPCList", "outputEPCList"})
_QUANTITY_LISTS = frozenset({"quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"})
_TEXT = frozenset({"eventTime", "recordTime", "eventTimeZoneOffset", "eventID", "parentID", "action",
                   "transformationID"})
_SENSOR_NUMBERS = frozenset({"value", "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue"})
_NOT_CONTEXT = frozenset({_XSI, "http://www.w3.org/2001/XMLSchema",
                          "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader",
                          "urn:epcglobal:epcis-masterdata:xsd:2", "urn:epcglobal:epcis-query:xsd:2",
                          "urn:epcglobal:epcis-masterdata:xsd:1", "urn:epcglobal:epcis-query:xsd:1"})
_MAX_ELEMENTS = 1_000_000  # a document larger than this is refused before mapping (memory)

# (URN prefix, web URI prefix, CBV 2.0 terms) per kind of CBV value
_BIZSTEP = ("urn:epcglobal:cbv:bizstep:", "https://ref.gs1.org/cbv/BizStep-", BIZ_STEPS)
_DISP = ("urn:epcglobal:cbv:disp:", "https://ref.gs1.org/cbv/Disp-", DISPOSITIONS)
_BTT = ("urn:epcglobal:cbv:btt:", "https://ref.gs1.org/cbv/BTT-", BIZ_TRANSACTION_TYPES)
_SDT = ("urn:epcglobal:cbv:sdt:", "https://ref.gs1.org/cbv/SDT-", SOURCE_DEST_TYPES)
_ER = ("urn:epcglobal:cbv:er:", "https://ref.gs1.org/cbv/ER-", ERROR_REASONS)
_COMP = ("urn:epcglobal:cbv:comp:", "https://ref.gs1.org/cbv/Comp-", COMPONENTS)
_GS1_VOC = ("https://gs1.org/voc/", "http://gs1.org/voc/", "gs1:")


class XmlInvalid(EventInvalid):
    """An XML document that is not EPCIS XML, or an element that has no JSON mapping (``path``: where)."""

    rule = "xml"

    def __str__(self) -> str:
        return f"xml: {self.path}: {self.reason}"


def _cbv(value: str, kind: tuple[str, str, frozenset[str]]) -> str:
    """A CBV value as the JSON binding writes it: the bare term when it is one of CBV 2.0's, else unchanged."""
    for prefix in kind[:2]:
        for p in (prefix, prefix.replace("https://ref.gs1.org/cbv/", "https://ns.gs1.org/cbv/")):
            if value.startswith(p) and value[len(p):] in kind[2]:
                return value[len(p):]
    return value


def _voc(value: str, terms: frozenset[str]) -> str:
    for p in _GS1_VOC:
        if value.startswith(p) and value[len(p):] in terms:
            return value[len(p):]
    return value


def _split(name: str) -> tuple[str | None, str]:
    """(namespace, local name) of an lxml tag or attribute name (``{ns}local``)."""
    if name.startswith("{"):
        ns, _, local = name[1:].partition("}")
        return ns, local
    return None, name


def _local(el: Any) -> tuple[str | None, str]:
    return _split(el.tag)


def _children(el: Any) -> Iterator[Any]:
    """Child elements (no comments or processing instructions)."""
    for c in el:
        if isinstance(c.tag, str):
            yield c


def _text(el: Any) -> str:
    return (el.text or "").strip()


def _number(text: str, where: str) -> int | float:
    try:
        if text.lstrip("+-").isdigit():
            return int(text)
        value = float(text)
    except ValueError:
        raise XmlInvalid(where, f"a number expected, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise XmlInvalid(where, f"a finite number expected, got {text!r}")
    return value


def _boolean(text: str, where: str) -> bool:
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise XmlInvalid(where, f"true or false expected, got {text!r}")


class _Mapper:
    """One document's mapping; collects the namespace prefixes its extensions use (the JSON-LD context)."""

    def __init__(self) -> None:
        self.context: dict[str, str] = {}
        self._prefix_of: dict[str, str] = {}
        for prefix, ns in DEFAULT_PREFIXES.items():
            self._prefix_of.setdefault(ns, prefix)
            self._prefix_of.setdefault(ns.rstrip(":/#"), prefix)  # XML writes urn:epcglobal:cbv:mda

    # -- extensions ---------------------------------------------------------------------------
    def declare(self, prefix: str, ns: str) -> None:
        """A namespace the document declares: its prefix goes to the context (an EPCIS context prefix
        bound to its own namespace is not repeated; bound to another, the document's binding is renamed)."""
        self.key(ns, "", prefix)

    def key(self, ns: str, local: str, prefix: str | None) -> str:
        known = self._prefix_of.get(ns)
        if known is None:
            p = prefix or "ns"
            if p in DEFAULT_PREFIXES or (p in self.context and self.context[p] != ns):
                n = 1
                while f"{p}{n}" in self.context or f"{p}{n}" in DEFAULT_PREFIXES:
                    n += 1
                p = f"{p}{n}"
            self.context[p] = ns
            self._prefix_of[ns] = known = p
        return f"{known}:{local}"

    def extension(self, el: Any, where: str) -> Any:
        kids = list(_children(el))
        if kids:
            return self.extensions(kids, where, nested=True)
        text = _text(el)
        xtype = el.get(f"{{{_XSI}}}type")
        if xtype is not None:
            local = xtype.rpartition(":")[2]
            if local in ("integer", "int", "long", "short", "byte", "nonNegativeInteger", "positiveInteger",
                         "unsignedInt", "unsignedLong"):
                return _number(text, where)
            if local in ("decimal", "double", "float"):
                value = _number(text, where)
                return float(value)
            if local == "boolean":
                return _boolean(text, where)
        return text

    def extensions(self, elements: list[Any], where: str, nested: bool = False) -> dict[str, Any]:
        """Extension elements as JSON members; inside an extension (``nested``) an element without
        namespace is a plain member, as XML allows there."""
        out: dict[str, Any] = {}
        for c in elements:
            ns, local = _local(c)
            if ns is None and not nested:
                raise XmlInvalid(f"{where}.{local}", "an extension element must be in a namespace")
            k = local if ns is None else self.key(ns, local, c.prefix)
            v = self.extension(c, f"{where}.{k}")
            if v == "" and not c.attrib:  # an empty element says nothing; the JSON binding has no member
                continue
            if k in out:
                out[k] = (out[k] if isinstance(out[k], list) else [out[k]]) + [v]
            else:
                out[k] = v
        return out

    def attributes(self, el: Any, where: str) -> dict[str, Any]:
        """An element's attributes as fields (sensor metadata and reports), typed as the JSON binding types them."""
        out: dict[str, Any] = {}
        for name, value in el.attrib.items():
            ns, local = _split(name)
            if ns == _XSI:
                continue
            if ns is not None:
                out[self.key(ns, local, _prefix_in(el, ns))] = value
            elif local in _SENSOR_NUMBERS:
                out[local] = _number(value.strip(), f"{where}@{local}")
            elif local == "booleanValue":
                out[local] = _boolean(value.strip(), f"{where}@{local}")
            elif local == "type":
                out[local] = _voc(value, MEASUREMENT_TYPES)
            elif local == "exception":
                out[local] = _voc(value, SENSOR_ALERT_TYPES)
            elif local == "component":
                out[local] = _cbv(value, _COMP)
            else:
                out[local] = value
        return out

    # -- standard fields ----------------------------------------------------------------------
    def fields(self, el: Any, out: dict[str, Any], where: str) -> None:
        extras: list[Any] = []
        for c in _children(el):
            ns, name = _local(c)
            here = f"{where}.{name}"
            if ns is not None:
                extras.append(c)
            elif name == "extension":  # EPCIS 1.x: fields added after 1.0 sit in <extension>
                self.fields(c, out, where)
            elif name in _TEXT:
                out[name] = _text(c)
            elif name == "bizStep":
                out[name] = _cbv(_text(c), _BIZSTEP)
            elif name == "disposition":
                out[name] = _cbv(_text(c), _DISP)
            elif name in _EPC_LISTS:
                out[name] = [_text(e) for e in _children(c)]
            elif name in _QUANTITY_LISTS:
                out[name] = [self.quantity(q, f"{here}[{i}]") for i, q in enumerate(_children(c))]
            elif name in ("readPoint", "bizLocation"):
                out[name] = self.location(c, here)
            elif name == "bizTransactionList":
                out[name] = [self.typed(t, "bizTransaction", _BTT, optional=True) for t in _children(c)]
            elif name in ("sourceList", "destinationList"):
                field = name[:-4]
                out[name] = [self.typed(t, field, _SDT, optional=False) for t in _children(c)]
            elif name == "sensorElementList":
                out[name] = [self.sensor_element(s, f"{here}[{i}]") for i, s in enumerate(_children(c))]
            elif name == "persistentDisposition":
                pd: dict[str, list[str]] = {}
                for s in _children(c):
                    _, which = _local(s)
                    pd.setdefault(which, []).append(_cbv(_text(s), _DISP))
                out[name] = pd
            elif name == "ilmd":
                out[name] = self.ilmd(c, here)
            elif name == "errorDeclaration":
                out[name] = self.error_declaration(c, here)
            elif name == "certificationInfo":
                prev = out.get(name)
                out[name] = _text(c) if prev is None else [*(prev if isinstance(prev, list) else [prev]), _text(c)]
            elif name == "baseExtension":  # EPCIS 1.x: eventID and errorDeclaration live here
                self.fields(c, out, where)
            else:
                raise XmlInvalid(here, f"<{name}> is not an EPCIS event field")
        if extras:
            out.update(self.extensions(extras, where))

    def ilmd(self, el: Any, where: str) -> dict[str, Any]:
        kids: list[Any] = []
        for c in _children(el):
            if _local(c) == (None, "extension"):  # EPCIS 1.x ILMD extension wrapper
                kids.extend(_children(c))
            else:
                kids.append(c)
        return self.extensions(kids, where)

    def quantity(self, el: Any, where: str) -> dict[str, Any]:
        q: dict[str, Any] = {}
        for c in _children(el):
            ns, name = _local(c)
            if ns is None and name == "epcClass":
                q[name] = _text(c)
            elif ns is None and name == "quantity":
                if c.get(f"{{{_XSI}}}nil") not in ("true", "1"):  # a nil quantity is an absent one
                    q[name] = _number(_text(c), f"{where}.quantity")
            elif ns is None and name == "uom":
                q[name] = _text(c)
            else:
                raise XmlInvalid(f"{where}.{name}", "a quantity element holds epcClass, quantity and uom only")
        return q

    def location(self, el: Any, where: str) -> dict[str, Any]:
        loc: dict[str, Any] = {}
        extras: list[Any] = []
        for c in _children(el):
            ns, name = _local(c)
            if ns is None and name == "id":
                loc["id"] = _text(c)
            elif ns is None and name == "extension":
                extras.extend(_children(c))
            elif ns is None:
                raise XmlInvalid(f"{where}.{name}", "a location holds id and extensions only")
            else:
                extras.append(c)
        loc.update(self.extensions(extras, where))
        return loc

    def typed(self, el: Any, field: str, kind: tuple[str, str, frozenset[str]], *, optional: bool) -> dict[str, str]:
        out: dict[str, str] = {}
        t = el.get("type")
        if t is not None or not optional:
            out["type"] = _cbv((t or "").strip(), kind)
        out[field] = _text(el)
        return out

    def sensor_element(self, el: Any, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        extras: list[Any] = []
        for c in _children(el):
            ns, name = _local(c)
            if ns is None and name == "sensorMetadata":
                out[name] = self.attributes(c, f"{where}.{name}")
            elif ns is None and name == "sensorReport":
                out.setdefault(name, []).append(self.attributes(c, f"{where}.{name}"))
            elif ns is None and name == "extension":
                extras.extend(_children(c))
            elif ns is None:
                raise XmlInvalid(f"{where}.{name}", "a sensor element holds sensorMetadata, sensorReport and "
                                                    "extensions only")
            else:
                extras.append(c)
        out.update(self.extensions(extras, where))
        return out

    def error_declaration(self, el: Any, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        extras: list[Any] = []
        for c in _children(el):
            ns, name = _local(c)
            if ns is not None:
                extras.append(c)
            elif name == "declarationTime":
                out[name] = _text(c)
            elif name == "reason":
                out[name] = _cbv(_text(c), _ER)
            elif name == "correctiveEventIDs":
                out[name] = [_text(e) for e in _children(c)]
            elif name == "extension":
                extras.extend(_children(c))
            else:
                raise XmlInvalid(f"{where}.{name}", f"<{name}> is not a field of an error declaration")
        out.update(self.extensions(extras, where))
        return out

    def event(self, el: Any, where: str) -> dict[str, Any]:
        _, etype = _local(el)
        out: dict[str, Any] = {"type": etype}
        self.fields(el, out, where)
        return out


def _prefix_in(el: Any, ns: str) -> str | None:
    for p, uri in (el.nsmap or {}).items():
        if uri == ns and p:
            return str(p)
    return None


def _event_elements(event_list: Any) -> Iterator[Any]:
    for c in _children(event_list):
        ns, name = _local(c)
        if ns is None and name == "extension":  # EPCIS 1.x: TransformationEvent and later types are wrapped
            yield from _event_elements(c)
        else:
            yield c


def parse_xml(data: bytes) -> Any:
    """The root element of ``data``, parsed without DTDs, entities or network (a refusal is ``XmlInvalid``)."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise XmlInvalid("document", f"not well-formed XML ({exc})") from None


def xml_document(data: bytes) -> dict[str, Any]:
    """An EPCIS XML document (2.0, or 1.2) as an EPCIS 2.0 JSON-LD EPCISDocument (events not yet validated)."""
    root = parse_xml(data)
    m = _Mapper()
    for el in root.iter():  # prefixes declared anywhere may name extensions or be used in CURIE values
        for prefix, uri in (el.nsmap or {}).items():
            if prefix and uri not in EPCIS_XML_NAMESPACES and uri not in _NOT_CONTEXT:
                m.declare(prefix, uri)
    ns, name = _local(root)
    if ns not in EPCIS_XML_NAMESPACES or name not in ("EPCISDocument", "EPCISQueryDocument"):
        raise XmlInvalid("document", f"an EPCISDocument in namespace {EPCIS_XML_NAMESPACES[0]} (or the 1.2 one) "
                                     f"expected, got {root.tag}")
    if sum(1 for _ in root.iter()) > _MAX_ELEMENTS:
        raise XmlInvalid("document", f"more than {_MAX_ELEMENTS} elements")
    body = next((c for c in _children(root) if _local(c) == (None, "EPCISBody")), None)
    if body is None:
        raise XmlInvalid("document", "no EPCISBody")
    lists = [c for c in body.iter() if isinstance(c.tag, str) and _local(c) == (None, "EventList")]
    events: list[dict[str, Any]] = []
    for event_list in lists:
        for el in _event_elements(event_list):
            ns, etype = _local(el)
            where = f"eventList[{len(events)}]"
            if ns is not None or etype not in _EVENT_TYPES:
                raise XmlInvalid(where, f"<{etype}> is not an EPCIS event type")
            events.append(m.event(el, where))
    context: list[Any] = [EPCIS_CONTEXT]
    if m.context:
        context.append(dict(sorted(m.context.items())))
    doc: dict[str, Any] = {"@context": context, "type": "EPCISDocument", "schemaVersion": "2.0"}
    if root.get("creationDate"):
        doc["creationDate"] = root.get("creationDate")
    doc["epcisBody"] = {"eventList": events}
    return doc
