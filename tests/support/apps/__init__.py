"""Apps the python-mode tests run: importable here (``tests.support.apps.ctapp``) for the
daemon flavor, and mounted at /apps in the test image (``ctapp``) for the container one.
Standard library only."""
