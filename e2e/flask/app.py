"""A Flask app that shares its sessions with the Nest library and nginx.

Written from protocol/PROTOCOL.md (v1) alone, not from the Nest library: it
signs and reads the cookie with itsdangerous, writes the three Redis keys in
one MULTI, regenerates the id at login, deletes the keys at logout, and, like
the 2017 Flask extension, publishes no revocation notice (section 7: a writer
that does not publish). Unlike that extension it writes only a changed
session, never on a plain read. The interop tests (e2e/interop.e2e-spec.ts)
run it with Debian's python3-flask, python3-redis and python3-itsdangerous.

Configured by environment: SESSION_SECRET, SESSION_SALT, SESSION_KEY_PREFIX,
SESSION_COOKIE_NAME, REDIS_URL, FLASK_PORT. It listens on 127.0.0.1 only.
"""
import hashlib
import json
import os
import re
import uuid

import flask
import redis
from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadSignature, Signer
from werkzeug.datastructures import CallbackDict

SID = re.compile(r"[A-Za-z0-9_-]{16,128}")
SIG = re.compile(r"[A-Za-z0-9_-]{27}")
MAX_COOKIE_BYTES = 256


class SharedSession(CallbackDict, SessionMixin):
    def __init__(self, initial=None, sid=None):
        def on_update(_):
            self.modified = True

        super().__init__(initial, on_update)
        self.sid = sid  # None until the first write gives it one
        self.modified = False
        self.destroyed = False


class SharedSessionInterface(SessionInterface):
    def __init__(self, client, key_prefix, salt):
        self.redis = client
        self.key_prefix = key_prefix
        self.salt = salt

    def keys(self, sid):
        p = self.key_prefix
        return f"{p}:data:{sid}", f"{p}:signature:{sid}", f"{p}:groups:{sid}"

    def signer(self, app):
        # Section 2: HMAC-SHA1 of the salt under the secret is the key; SHA-1 signs.
        return Signer(app.secret_key, salt=self.salt, key_derivation="hmac", digest_method=hashlib.sha1)

    def open_session(self, app, request):
        sid = self.session_id(app, request.cookies.get(self.get_cookie_name(app)))
        raw = self.redis.get(self.keys(sid)[0]) if sid else None
        if raw is None:
            return SharedSession()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            app.logger.warning("session %s: data is not a JSON object; treated as empty", sid[:8])
            data = {}
        return SharedSession(data, sid=sid)

    def session_id(self, app, cookie):
        """The sid of a well-formed cookie with a valid signature, else None."""
        if not cookie or len(cookie.encode()) > MAX_COOKIE_BYTES:
            return None
        sid, dot, sig = cookie.rpartition(".")
        if not dot or not SID.fullmatch(sid) or not SIG.fullmatch(sig):
            return None
        try:
            return self.signer(app).unsign(cookie).decode()
        except BadSignature:
            return None

    def regenerate(self, session):
        """Login: the old session's keys go, and the next write issues a new id."""
        if session.sid:
            self.redis.delete(*self.keys(session.sid))
        session.clear()
        session.sid = None
        session.modified = True

    def destroy(self, session):
        """Logout: the three keys go, and the cookie is cleared."""
        if session.sid:
            self.redis.delete(*self.keys(session.sid))
        session.clear()
        session.destroyed = True

    def save_session(self, app, session, response):
        name = self.get_cookie_name(app)
        domain, path = self.get_cookie_domain(app), self.get_cookie_path(app)
        if session.destroyed or (session.modified and not session):
            if session.sid:
                self.redis.delete(*self.keys(session.sid))
            response.delete_cookie(
                name,
                domain=domain,
                path=path,
                secure=self.get_cookie_secure(app),
                httponly=self.get_cookie_httponly(app),
                samesite=self.get_cookie_samesite(app),
            )
            return
        # Only a changed session is written: rewriting on every read could
        # bring back a session that another party deleted meanwhile.
        if not session.modified:
            return
        groups = session.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            raise TypeError("session['groups'] must be a list of non-empty strings")
        if session.sid is None:
            session.sid = str(uuid.uuid4())
        cookie = self.signer(app).sign(session.sid).decode()
        ttl = int(app.permanent_session_lifetime.total_seconds())
        data_key, signature_key, groups_key = self.keys(session.sid)
        tx = self.redis.pipeline(transaction=True)
        tx.set(data_key, json.dumps(dict(session)), ex=ttl)
        tx.set(signature_key, cookie.rpartition(".")[2], ex=ttl)
        tx.delete(groups_key)
        if groups:
            tx.sadd(groups_key, *groups)
            tx.expire(groups_key, ttl)
        tx.execute()
        response.set_cookie(
            name,
            cookie,
            expires=self.get_expiration_time(app, session),
            domain=domain,
            path=path,
            secure=self.get_cookie_secure(app),
            httponly=self.get_cookie_httponly(app),
            samesite=self.get_cookie_samesite(app),
        )


def create_app(env=os.environ):
    app = flask.Flask(__name__)
    app.secret_key = env.get("SESSION_SECRET") or "demo-secret-change-me"
    app.config["SESSION_COOKIE_NAME"] = env.get("SESSION_COOKIE_NAME") or "session"
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    client = redis.Redis.from_url(env.get("REDIS_URL") or "redis://127.0.0.1:6379", socket_timeout=1)
    app.session_interface = SharedSessionInterface(
        client,
        key_prefix=env.get("SESSION_KEY_PREFIX") or "resty_shared_session",
        salt=env.get("SESSION_SALT") or "flask-resty-session",
    )

    def groups_from(body):
        groups = body.get("groups") if isinstance(body, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            flask.abort(400, "groups must be a list of non-empty strings")
        return list(dict.fromkeys(groups))

    def whoami_body():
        return {"username": flask.session["username"], "groups": flask.session.get("groups", [])}

    @app.get("/healthz")
    def healthz():
        return "ok\n"

    @app.post("/login")
    def login():
        body = flask.request.get_json(silent=True)
        username = body.get("username") if isinstance(body, dict) else None
        if not isinstance(username, str) or not username:
            flask.abort(400, "username is required")
        groups = groups_from(body)
        app.session_interface.regenerate(flask.session)
        flask.session.permanent = True  # stored as "_permanent", as Flask does
        flask.session["username"] = username
        flask.session["groups"] = groups
        return whoami_body()

    @app.post("/logout")
    def logout():
        app.session_interface.destroy(flask.session)
        return "", 204

    @app.post("/groups")
    def set_groups():
        if "username" not in flask.session:
            flask.abort(401)
        flask.session["groups"] = groups_from(flask.request.get_json(silent=True))
        return whoami_body()

    @app.get("/whoami")
    def whoami():
        if "username" not in flask.session:
            return {"error": "not logged in"}, 401
        return whoami_body()

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ["FLASK_PORT"]), threaded=True, use_reloader=False)
