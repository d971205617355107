"""The public web portal (issue #18): pages, templates, static files, and the words in two languages.

`ROUTES` go into the app's route list; `TEMPLATES` is the app's template configuration. Everything the
browser loads comes from envx itself (api/portal/static): no CDN, no build step.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler

from api.portal.pages import PAGES

HERE = Path(__file__).parent
STATIC_PATH = "/portal/static"

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)
TEMPLATES: TemplateConfig[JinjaTemplateEngine] = TemplateConfig(instance=JinjaTemplateEngine.from_environment(_env))

STATIC = create_static_files_router(path=STATIC_PATH, directories=[HERE / "static"], name="portal-static",
                                    include_in_schema=False, cache_control=CacheControlHeader(max_age=300))
ROUTES: list[ControllerRouterHandler] = [*PAGES, STATIC]
