"""The public surface: every exported name resolves, and importing facetalk stays light."""

import subprocess
import sys

import facetalk


def test_every_exported_name_resolves():
    for name in facetalk.__all__:
        assert getattr(facetalk, name) is not None, name
    assert issubclass(facetalk.NoFaceError, facetalk.FacetalkError)


def test_import_loads_no_heavy_modules():
    code = "import sys, facetalk; print(sorted(m for m in ('cv2', 'dlib', 'av', 'pocketsphinx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
