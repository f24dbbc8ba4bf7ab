"""mkdocs hooks for the documentation site (``hooks:`` in ``mkdocs.yml``).

The extension guides tag the files their examples write as ```` ```python file=NAME ````, the form
``tests/test_docs.py`` reads. pymdownx.superfences does not accept that option, so the site shows
such a block with the file name as its title (```` ```python title="NAME" ````) instead; the
Markdown files themselves stay as the tests read them.
"""
import re

FILE_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<lang>\w+) file=(?P<name>\S+)[ \t]*$",
                        re.M)


def on_page_markdown(markdown, **kwargs):
    """Rewrite ``file=NAME`` fence options to ``title="NAME"``."""
    return FILE_FENCE.sub(r'\g<indent>\g<fence>\g<lang> title="\g<name>"', markdown)
