"""The SEN part of a Common Transfer File (CTF), built from the register and read back.

When a pupil leaves, the school's MIS sends a CTF (DfE XML) to the next
school. senflow produces its SEN part for the MIS to send or merge:

``SENhistory/SEN/{StartDate, SENprovision}``: one ``SEN`` per change of SEN
provision, in date order. A spell of K or E that ended without another one
starting that day (SEN support ended) is followed by an ``N`` from that day, so
the receiving school sees when support stopped. Leaving the school does not end
a spell here: the provision at leaving is the one the next school inherits.

``SENneeds/SENneed/{NeedStartDate, NeedEndDate, SENtypeRank, SENtype}``: every
ranked need with the days it was in force; ``NeedEndDate`` is left out while a
need is still in force when the pupil leaves.

The file is a ``CTfile`` with a ``Header`` (document name, version, time, a
``partial`` qualifier, the source and destination schools by URN and, when
given, LA number and establishment number) and one ``Pupil`` under
``CTFpupilData`` with the UPN, names and date of birth when senflow holds them
(not after an erasure). :func:`parse` reads such a file back into the same
structure, so building and parsing round-trip. Only what senflow knows is
written: the rest of a full CTF (attendance, assessments, contacts...) is the
MIS's.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

Doc = dict[str, Any]

CTF_VERSION = "25.0"
DOCUMENT_NAME = "Common Transfer File"
SUPPLIER_ID = "senflow"


def sen_history(view: Doc) -> Doc:
    """``{"sen": [...], "needs": [...]}`` from a register document (or ``register.derive``)."""
    spells = sorted(view["provision_history"], key=lambda s: s["start"])
    left_on = view.get("left_on")
    sen: list[Doc] = []
    for i, spell in enumerate(spells):
        sen.append({"start_date": spell["start"], "provision": spell["provision"]})
        end = spell["end"]
        follows = any(later["start"] == end for later in spells[i + 1 :])
        if end is not None and end != left_on and not follows:
            sen.append({"start_date": end, "provision": "N"})
    needs = [
        {
            "start_date": h["start"],
            "end_date": None if h["end"] is None or h["end"] == left_on else h["end"],
            "rank": int(h["rank"]),
            "type": h["type"],
        }
        for h in view["needs_history"]
    ]
    needs.sort(key=lambda n: (n["start_date"], n["rank"], n["type"]))
    return {"sen": sen, "needs": needs}


def _text(parent: ET.Element, tag: str, value: Any) -> None:
    if value is not None and value != "":
        ET.SubElement(parent, tag).text = str(value)


def _school(parent: ET.Element, tag: str, urn: str | None, laestab: str | None) -> None:
    if urn is None and laestab is None:
        return
    school = ET.SubElement(parent, tag)
    if laestab:
        _text(school, "LEA", laestab[:3])
        _text(school, "Estab", laestab[3:])
    _text(school, "URN", urn)


def build(
    pupil: Doc,
    history: Doc,
    *,
    generated_at: datetime,
    source_urn: str | None,
    dest_urn: str | None = None,
    source_laestab: str | None = None,
    dest_laestab: str | None = None,
) -> str:
    """The CTF XML text. ``pupil``: ``upn`` and, when known, ``surname``, ``forename``, ``dob``."""
    root = ET.Element("CTfile")
    header = ET.SubElement(root, "Header")
    _text(header, "DocumentName", DOCUMENT_NAME)
    _text(header, "CTFversion", CTF_VERSION)
    _text(header, "DateTime", generated_at.replace(microsecond=0).isoformat())
    _text(header, "DocumentQualifier", "partial")
    _text(header, "SupplierID", SUPPLIER_ID)
    _school(header, "SourceSchool", source_urn, source_laestab)
    _school(header, "DestSchool", dest_urn, dest_laestab)
    data = ET.SubElement(root, "CTFpupilData")
    p = ET.SubElement(data, "Pupil")
    _text(p, "UPN", pupil["upn"])
    _text(p, "Surname", pupil.get("surname"))
    _text(p, "Forename", pupil.get("forename"))
    _text(p, "DOB", pupil.get("dob"))
    if history["sen"]:
        hist = ET.SubElement(p, "SENhistory")
        for s in history["sen"]:
            sen = ET.SubElement(hist, "SEN")
            _text(sen, "StartDate", s["start_date"])
            _text(sen, "SENprovision", s["provision"])
    if history["needs"]:
        needs = ET.SubElement(p, "SENneeds")
        for n in history["needs"]:
            need = ET.SubElement(needs, "SENneed")
            _text(need, "NeedStartDate", n["start_date"])
            _text(need, "NeedEndDate", n["end_date"])
            _text(need, "SENtypeRank", n["rank"])
            _text(need, "SENtype", n["type"])
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _get(elem: ET.Element, tag: str) -> str | None:
    found = elem.find(tag)
    return found.text if found is not None and found.text is not None else None


def parse(xml_text: str) -> list[Doc]:
    """The pupils of a CTF: ``{"upn", "surname", "forename", "dob", "history"}`` each.

    Refuses a document type declaration (no entities from outside the file).
    """
    if "<!DOCTYPE" in xml_text.upper() or "<!ENTITY" in xml_text.upper():
        raise ValueError("a CTF must not declare a document type or entities")
    root = ET.fromstring(xml_text)
    if root.tag != "CTfile":
        raise ValueError(f"not a CTF: the root element is {root.tag!r}")
    out: list[Doc] = []
    for p in root.iterfind("CTFpupilData/Pupil"):
        sen = [
            {"start_date": _get(s, "StartDate"), "provision": _get(s, "SENprovision")}
            for s in p.iterfind("SENhistory/SEN")
        ]
        needs = [
            {
                "start_date": _get(n, "NeedStartDate"),
                "end_date": _get(n, "NeedEndDate"),
                "rank": int(_get(n, "SENtypeRank") or 0),
                "type": _get(n, "SENtype"),
            }
            for n in p.iterfind("SENneeds/SENneed")
        ]
        out.append(
            {
                "upn": _get(p, "UPN"),
                "surname": _get(p, "Surname"),
                "forename": _get(p, "Forename"),
                "dob": _get(p, "DOB"),
                "history": {"sen": sen, "needs": needs},
            }
        )
    return out


def header(xml_text: str) -> Doc:
    """The header fields of a CTF, for checks and for the receiving side."""
    root = ET.fromstring(xml_text)
    h = root.find("Header")
    if h is None:
        return {}
    return {
        "document_name": _get(h, "DocumentName"),
        "version": _get(h, "CTFversion"),
        "datetime": _get(h, "DateTime"),
        "qualifier": _get(h, "DocumentQualifier"),
        "supplier": _get(h, "SupplierID"),
        "source_urn": _get(h, "SourceSchool/URN"),
        "dest_urn": _get(h, "DestSchool/URN"),
    }
