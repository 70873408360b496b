"""papermill's command line, started without one optional import that costs ~2 s per run.

jsonschema (under nbformat) imports `rfc3987_syntax` if installed, to check the "iri" string
format, and that module builds a grammar at import. Notebook validation never uses it, and
jsonschema skips the check when the import fails. The grader runs papermill through this file
(by path, so the `lab` package is not imported), and costlab's own grading commands call
`skip_iri_format_check()` before they first import nbformat.
"""

import sys


def skip_iri_format_check() -> None:
    """Make `import rfc3987_syntax` fail fast in this process (jsonschema then skips the IRI check)."""
    sys.modules.setdefault("rfc3987_syntax", None)


if __name__ == "__main__":
    skip_iri_format_check()
    from papermill.cli import papermill

    papermill(prog_name="papermill")
