"""mkdocs hooks: the configuration page's pipelines.yaml reference is generated from the schema
(``assay.config.reference``) at build time, so that it cannot drift from what Assay accepts."""

import os
import sys


def on_page_markdown(markdown, page, config, files):
    """Replace the reference marker with the generated reference."""
    # the site is built from the repository root; the project there is the one documented,
    # whether or not it is the one installed
    root = os.path.dirname(config["config_file_path"])
    if root not in sys.path:
        sys.path.insert(0, root)
    from assay.config.reference import MARKER
    from assay.config.reference import markdown as reference

    if MARKER in markdown:
        return markdown.replace(MARKER, reference(heading_level=3))
    return markdown
