"""The documentation site's generated pages: each reference page rendered from the code it describes.

``pages.GENERATED`` maps a page under docs/ to the function that renders it; ``gen_pages.py`` (run by
the mkdocs-gen-files plugin at every build) writes them, so they can never drift from the code.
Nothing here is part of the installed package.
"""
