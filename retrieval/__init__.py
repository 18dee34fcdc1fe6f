"""rapport's retrieval library: encoders, per-user indexes, search, prompts, generators.

It knows nothing of HTTP, SQL or settings: callers pass explicit config objects
(``retrieval.config``). Its users import each name from the module that defines it
(``from retrieval.search import search_photos``); this package re-exports nothing, so
importing a light part (config, errors, image decoding) never loads torch. Where to look:

- ``config``: every frozen config and kind, torch-free; ``errors``: the domain errors.
- ``images``: decoding untrusted bytes, and the photo types accepted.
- ``encoders`` (``open_encoder``), ``encoder`` (open_clip), ``torchvision_encoder``,
  ``image_encoder`` (the protocol), ``batching`` (the micro-batching queue).
- ``regions`` (whole, grid, detector), ``search`` (photos → regions → vectors → matches),
  ``index`` (the per-user index and its cache), ``matching``, ``label_view``, ``decision``
  (is a concept present) and ``background`` (its cohort photos).
- ``names`` (names in text), ``prompt`` (RAP's prompt), ``generators`` (the MLLMs).
"""
