"""isplit: decide where to split a deep network between an embedded device and a server.

Kept import-light on purpose: the Snakefile imports small stdlib-only pieces of this
package (dataset file names, weight slugs) at parse time, before any job runs.
"""

__version__ = "0.1.0"
