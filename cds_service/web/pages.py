"""The rule pages and the demo page (see the package docstring); the catalogue is built once, at start-up."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template

from cds_service import STATE_KEY
from cds_service.errors import NotFound
from cds_service.knowledge.policy import load_policy
from cds_service.resources import default_rules_dir
from cds_service.web import demo
from cds_service.web.catalogue import Catalogue, build_catalogue
from cds_service.web.headers import page_headers
from cds_service.web.markdown import to_html

blueprint = Blueprint(
    "pages", __name__, template_folder="templates", static_folder="static", static_url_path="/assets"
)
blueprint.after_request(page_headers)
CATALOGUE_KEY = "naltrexone_cds_catalogue"


def catalogue() -> Catalogue:
    found: Catalogue = current_app.extensions[CATALOGUE_KEY]
    return found


@blueprint.get("/rules", strict_slashes=False)
def rules_index() -> str:
    return render_template("rules.html", catalogue=catalogue())


@blueprint.get("/rules.json")
def rules_json() -> Response:
    current = catalogue()
    return jsonify(
        {
            "version": current.version,
            "policy": [{"name": p.name, "value": p.value, "default": p.default} for p in current.policy],
            "rules": [rule.as_json() for rule in current.rules],
        }
    )


@blueprint.get("/rules/<rule_id>")
def rule_page(rule_id: str) -> str:
    rule = catalogue().rule(rule_id)
    if rule is None:
        raise NotFound(f"no rule {rule_id[:80]!r}; the rules are listed at /rules")
    return render_template("rule.html", catalogue=catalogue(), rule=rule)


def web_url(url: object) -> bool:
    """Whether a URL from a card may be a link on a page: http(s) only, never javascript: and the like."""
    return isinstance(url, str) and url.lower().startswith(("https://", "http://"))


def register(app: Flask) -> None:
    state = app.extensions[STATE_KEY]
    rules_dir = state.settings.rules_dir or default_rules_dir()
    app.extensions[CATALOGUE_KEY] = build_catalogue(state.pipeline.knowledge, load_policy(rules_dir))
    app.jinja_env.filters["markdown"] = to_html
    app.jinja_env.filters["web_url"] = web_url
    with_demo = demo.enabled(state.settings)
    app.context_processor(lambda: {"demo_enabled": with_demo})
    app.register_blueprint(blueprint)
    if with_demo:
        app.register_blueprint(demo.blueprint)
