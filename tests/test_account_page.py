"""The account page: change the password, sign out other sessions, delete the account (ledger kept)."""

from __future__ import annotations

from kyma.models import Account, ApiKey, LedgerEntry, SessionToken
from tests.test_web import browser, csrf_of, sign_up


def post(client, path: str, **form):
    return client.post(path, data={**form, "csrf_token": csrf_of(client)})


def login(app, email: str, password: str):
    other = browser(app)
    resp = other.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(other)})
    assert resp.status_code in (200, 302, 303), resp.status_code
    return other


def test_changing_the_password_ends_other_sessions_and_keeps_this_one(app):
    web = browser(app)
    sign_up(web, "pw@example.com", "first-pw")
    laptop = login(app, "pw@example.com", "first-pw")
    assert "1 other\n    session is signed in" in web.get("/account").get_data(as_text=True)
    wrong = post(web, "/account/password", current_password="nope-nope", new_password="second-pw")
    assert wrong.status_code == 401 and "current password is not correct" in wrong.get_data(as_text=True)
    done = post(web, "/account/password", current_password="first-pw", new_password="second-pw")
    assert done.status_code == 200 and "1 other session was signed out" in done.get_data(as_text=True)
    assert web.get("/account").status_code == 200  # this browser stays signed in
    assert laptop.get("/account").status_code in (302, 303)  # the other one is out
    assert login(app, "pw@example.com", "second-pw").get("/account").status_code == 200


def test_a_weak_or_unchanged_new_password_is_refused(app):
    web = browser(app)
    sign_up(web, "weak@example.com", "first-pw")
    short = post(web, "/account/password", current_password="first-pw", new_password="x")
    same = post(web, "/account/password", current_password="first-pw", new_password="first-pw")
    assert short.status_code == 400 and same.status_code == 400
    assert "same as the current one" in same.get_data(as_text=True)


def test_sign_out_other_sessions(app):
    web = browser(app)
    sign_up(web, "sess@example.com", "first-pw")
    others = [login(app, "sess@example.com", "first-pw") for _ in range(2)]
    resp = post(web, "/account/sessions")
    assert "2 other sessions were signed out" in resp.get_data(as_text=True)
    assert all(o.get("/dashboard").status_code in (302, 303) for o in others)
    assert web.get("/dashboard").status_code == 200


def test_deleting_the_account_revokes_everything_but_keeps_the_ledger(app):
    web = browser(app)
    sign_up(web, "gone@example.com", "first-pw")
    account = Account.get(Account.email == "gone@example.com")
    ledger_rows = LedgerEntry.select().where(LedgerEntry.account == account.id).count()
    unconfirmed = post(web, "/account/delete", password="first-pw", confirm="")
    wrong = post(web, "/account/delete", password="wrong-pw", confirm="delete")
    assert unconfirmed.status_code == 400 and wrong.status_code == 401
    assert Account.get_by_id(account.id).email == "gone@example.com"  # nothing happened yet
    gone = post(web, "/account/delete", password="first-pw", confirm="DELETE")
    assert gone.status_code in (302, 303) and web.get("/dashboard").status_code in (302, 303)
    row = Account.get_by_id(account.id)
    assert row.email == f"deleted-{account.id}@deleted.invalid"
    assert not ApiKey.select().where((ApiKey.account == account.id) & ApiKey.revoked_at.is_null()).exists()
    assert not SessionToken.select().where((SessionToken.account == account.id)
                                           & SessionToken.revoked_at.is_null()).exists()
    assert LedgerEntry.select().where(LedgerEntry.account == account.id).count() == ledger_rows > 0
    again = browser(app)
    sign_up(again, "gone@example.com", "new-pw-1")  # the address is free again


def test_the_account_page_needs_a_session(app):
    assert browser(app).get("/account").status_code in (302, 303)
    web = browser(app)
    sign_up(web, "csrf-acct@example.com", "first-pw")
    forged = web.post("/account/delete", data={"password": "first-pw", "confirm": "delete"})
    assert forged.status_code == 403
