from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from kmconsole.api import services
from tests.support.redis_db import delete_prefix, redis_client
from vpp import secrets
from vpp.models import VppServerSetting


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    delete_prefix(redis_client(), "kmconsole:api:rate")
    yield
    delete_prefix(redis_client(), "kmconsole:api:rate")


@pytest.fixture
def token_setting(db):
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt("fake-s-token")
    setting.token_org_name = "Example Org"
    setting.save()
    return setting


def grant(user, *perms: str) -> None:
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))


@pytest.fixture
def operator(django_user_model):
    """A console admin holding every API scope."""
    user = django_user_model.objects.create_user("operator", password=None)
    grant(user, *services.SCOPES)
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def api_token(operator):
    """(token row, secret) with every scope."""
    return services.token_create(admin=operator, name="automation", scopes=list(services.SCOPES))


@pytest.fixture
def api(client, api_token):
    """A Django test client that sends the token."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_token[1]}"
    return client
