import pytest
from django.test import Client

from tests.helpers import persona_password


@pytest.fixture
def password_login():
    """``password_login(user)``: a fresh browser-like client that typed the user's password
    on the login page (and nothing more); returns the client and the response."""

    def login(user, *, next_url: str = "", client: Client | None = None):
        client = client or Client()
        data = {"username": user.username, "password": persona_password(user.username)}
        if next_url:
            data["next"] = next_url
        return client, client.post("/login/", data)

    return login
