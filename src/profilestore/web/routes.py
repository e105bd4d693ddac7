"""The web page's routes in one router, its static files, and how its errors answer (HTML, not JSON)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from profilestore.errors import ProfilestoreError
from profilestore.web import auth, cohorts, edit, importer, insights, profile, users
from profilestore.web.render import page
from profilestore.web.session import COOKIE, SignInRequired

# Paths that are pages: their errors are HTML pages.
PAGE_PREFIXES = ("/users", "/cohorts", "/insights", "/signin", "/signout", "/switch")

router = APIRouter(include_in_schema=False)
router.include_router(auth.router)
router.include_router(users.router)
router.include_router(profile.router)
router.include_router(cohorts.router)
router.include_router(edit.router)
router.include_router(importer.router)
router.include_router(insights.router)


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/users", status_code=303)


def is_page(path: str) -> bool:
    return path == "/" or path.startswith(PAGE_PREFIXES)


def error_page(request: Request, exc: ProfilestoreError) -> HTMLResponse:
    title = {400: "That did not work", 403: "Not allowed", 404: "Not found"}.get(exc.status_code, "Error")
    response = page(
        request, "error.html", {"web": None, "title": title, "message": exc.message}, exc.status_code
    )
    response.headers.update(exc.headers)
    return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(packages=[("profilestore.web", "static")]), name="static")

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET" or request.headers.get("accept", "").startswith("application/json"):
            target = "/users"
        response = RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)
        if COOKIE in request.cookies:
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response
