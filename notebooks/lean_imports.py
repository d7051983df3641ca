"""A pytest plugin for the notebooks pass, loaded before nbval: skip an import that nbval never uses.

nbformat imports jsonschema, which builds the IRI grammar of rfc3987_syntax for
its "iri" format checker; nbformat validates notebooks without any format checker, so jsonschema
simply goes without that one.
"""

import sys

sys.modules.setdefault("rfc3987_syntax", None)  # None in sys.modules: `import` raises ImportError
