"""The vpp app plugs into the Users page through its hooks (users/ imports nothing of vpp)."""

from __future__ import annotations

import pytest

from users.selectors import EXTRA_FILTERS, ROW_ANNOTATIONS, UserFilters, user_list
from users.table import CELL_RENDERERS
from vpp.selectors import users_filter_by_vpp_status, users_vpp_row_annotation
from vpp.users_table import vpp_status_cell

pytestmark = pytest.mark.django_db


def test_the_vpp_app_registers_its_column_and_its_filter():
    assert users_vpp_row_annotation in ROW_ANNOTATIONS
    assert CELL_RENDERERS["vpp_status"] is vpp_status_cell
    extra = EXTRA_FILTERS["vpp_status"]
    assert extra.apply is users_filter_by_vpp_status
    assert extra.options[:2] == (("", "Any VPP status"), ("none", "Not a VPP user"))
    assert '"vpp_vppuser"."id" IS NULL' in str(user_list(filters=UserFilters(extra=(("vpp_status", "none"),))).query)
