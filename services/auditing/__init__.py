"""Auditing: replay a pupil's history on any date, inspection evidence and statutory exports.

Pure modules (no database; unit-tested):

* :mod:`.timeline`: the bitemporal view of a stream: what had *happened* by a date
  (``as_of``) and what senflow had *recorded* by a moment (``as_known_at``), with
  corrections applied as known then, and the late entries that were not yet known;
* :mod:`.cycles`: every assess-plan-do-review cycle, with outcomes, interventions
  and their measures, reviews and views;
* :mod:`.replay`: a replay document (state, cycles, timeline) built from the two;
* :mod:`.practice`: the Code of Practice, paragraph by paragraph, for one pupil;
* :mod:`.evidence`, :mod:`.charts`, :mod:`.html`, :mod:`.sample`: evidence packs
  (JSON and printable HTML with inline SVG charts) and inspection samples;
* :mod:`.census`, :mod:`.ctf`, :mod:`.tables`, :mod:`.sar`: the School Census SEN
  extract and its validation, the SEN part of a Common Transfer File, register and
  provision-map CSVs, and the subject access export.

At the edges: :mod:`.gather` reads what those need from the store and the
projections (the one module that touches the database); :mod:`.pdf` finds a PDF
renderer if there is one; :mod:`.output` writes files. The HTTP API calls
:func:`senflow.services.auditing.gather.replay_pupil`.
"""
