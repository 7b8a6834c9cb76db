"""The default ``named_regexp`` of ``zip_collect``: ``<student_id>/[<chapter>/]<notebook>.ipynb`` at any depth."""

DEFAULT_PATTERN = (
    r".*/(?P<student_id>(?!ch\d\d_)[A-Za-z0-9_@-][\w.@-]*)/(?:ch\d\d_\w+/)?(?P<file_id>[^/]+\.ipynb)$"
)
