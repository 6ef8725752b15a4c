"""Fixtures and collection hooks; the shared helper functions are in tests/helpers.py."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.helpers import unique_name  # noqa: E402  (needs ROOT on sys.path)


@pytest.fixture
def lab_name():
    """A fresh lab name; whatever the test built under it is cleaned afterwards."""
    from labkit.lab import clean
    name = unique_name()
    yield name
    clean(name)


@pytest.fixture
def make_lab(lab_name):
    """make_lab(**spec_fields) builds and returns a running Lab (cleaned after the test)."""
    from labkit.lab import Lab
    from labkit.spec import LabSpec

    def make(**fields):
        return Lab(LabSpec(name=lab_name, **fields)).up()
    return make


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="integration tests build labs and need root"))
