"""Accounts and sign-in (installsure.api.auth) and user administration
(installsure.api.users).

Registration, login and refresh need no credentials: their answer depends on the body
alone (a fresh address registers, an unknown one does not sign in, a made-up refresh
token is refused). The account routes need a user: the operator (API_SECRET) is a
service principal, not an account, and gets 403 there. Administering users is for
admins and the operator.
"""

import uuid

from tests.authz.matrix import Entry, Situation, public, statuses

#: Passes the password policy (long, not common, not the address's local part).
PASSWORD = "matrix-Girder-Truss-7"


def _new_account(_s: Situation) -> dict[str, str]:
    return {"email": f"new-{uuid.uuid4()}@example.test", "password": PASSWORD,
            "name": "New Hire"}


def _outsider(s: Situation) -> dict[str, str]:
    return {"id": s.outsider_id}


ACCOUNT = statuses(200, operator=403)
ADMINS = statuses(403, admin=200, operator=200)

ENTRIES = [
    Entry("POST", "/api/auth/register", public(201), body=_new_account),
    Entry("POST", "/api/auth/login", public(401),
          body=lambda _s: {"email": f"nobody-{uuid.uuid4()}@example.test",
                           "password": PASSWORD}),
    Entry("POST", "/api/auth/refresh", public(401),
          body=lambda _s: {"refreshToken": "made-up-" + uuid.uuid4().hex}),
    Entry("POST", "/api/auth/logout", {"-": ACCOUNT}),
    Entry("GET", "/api/auth/me", {"-": ACCOUNT}),
    Entry("GET", "/api/auth/verify", {"-": ACCOUNT}),
    # A wrong current password is a 400 naming it: the caller got past authorization.
    Entry("POST", "/api/auth/change-password", {"-": statuses(400, operator=403)},
          body=lambda _s: {"currentPassword": "not-the-password",
                           "newPassword": "another-Girder-Truss-8"}),
    Entry("GET", "/api/users", {"-": ADMINS}),
    Entry("POST", "/api/users", {"-": statuses(403, admin=201, operator=201)},
          body=lambda s: {**_new_account(s), "role": "member"}),
    Entry("GET", "/api/users/{id}", {"-": ADMINS}, params=_outsider),
    Entry("PATCH", "/api/users/{id}", {"-": ADMINS}, params=_outsider,
          body=lambda _s: {"name": "Renamed"}),
]
