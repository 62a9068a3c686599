"""Where the page templates, the static files and the migrations are.

They are edited in the checkout's top-level folders (templates/, static/,
migrations/). The wheel carries them inside the package, as dashboard/templates,
dashboard/static and dashboard/migrations (pyproject.toml maps the folders there),
so an installed server finds them through the package wherever it runs from. A
checkout, or an editable install of one, has them beside the package instead.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# A file each folder must hold, so that a stray folder of the same name is not taken for it.
MARKERS = {"templates": "dashboard.html", "static": "page.js", "migrations": "env.py"}


class ResourceMissing(Exception):
    """A folder the server needs is not installed; str() says where it was looked for."""


def resource_dir(name: str) -> Path:
    """The folder `name` ("templates", "static" or "migrations"): in the package, else
    in the checkout the package sits in; ResourceMissing when neither has it."""
    package = Path(str(resources.files("dashboard")))
    installed, checkout = package / name, package.parent / name
    for folder in (installed, checkout):
        if (folder / MARKERS[name]).is_file():
            return folder
    raise ResourceMissing(
        f"the {name} folder is missing: not in the package ({installed}) nor in a checkout ({checkout}); "
        "install the package again (pip install --force-reinstall)"
    )
