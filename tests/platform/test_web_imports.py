"""The web process never imports TensorFlow: its image carries none, and importing it
would cost every web process ~550 MB and seconds at start."""

from tests.helpers import fresh_python

# Every URL resolved (which imports every view, API and admin module), in a fresh
# interpreter with the test settings, as gunicorn would load the WSGI application.
CHECK = r"""
import os, re, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "leukweb.settings_test"
from django.urls import URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern
from leukweb.wsgi import application

def routes(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            route = isinstance(p.pattern, RoutePattern) and prefix is not None
            yield from routes(p.url_patterns, prefix + str(p.pattern) if route else None)
        else:
            yield p, prefix

resolved = callbacks = 0
for pattern, prefix in routes(get_resolver().url_patterns):
    callbacks += pattern.callback is not None  # the view's module is imported
    if prefix is not None and isinstance(pattern.pattern, RoutePattern):
        example = re.sub(r"<int:\w+>", "1", prefix + str(pattern.pattern))
        example = re.sub(r"<(?:\w+:)?\w+>", "x", example)
        assert resolve("/" + example).func is not None, example
        resolved += 1
print("RESOLVED:", resolved)
print("CALLBACKS:", callbacks)
heavy = {"tensorflow", "keras", "tf2onnx"}
print("HEAVY:", ",".join(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_the_wsgi_application_and_every_url_import_no_tensorflow():
    out = fresh_python(CHECK, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    # The walk reached the whole URL map: the site's own routes and the admin's and API's.
    assert int(lines["RESOLVED"]) > 40 and int(lines["CALLBACKS"]) > 100, out.stdout
    assert lines["HEAVY"] == "", lines["HEAVY"]
