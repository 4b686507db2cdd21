"""Launch links for a class: open a lesson on a JupyterHub through nbgitpuller, or on Binder.

Why: an instructor hands out one link per lesson. Clicking an nbgitpuller link makes the hub clone (or update,
never overwriting a learner's edits) the course repository into the learner's home and open the lesson; a Binder
link builds the repository's environment (``binder/``) and opens the lesson there. Both formats are easy to get
subtly wrong by hand (the repository URL must be encoded, the path must start with the folder nbgitpuller clones
into), so they are built here, checked, and every refusal says what to pass instead. Pure string work: this module
imports no PyTorch and nothing else from tl_lab.

Formats, as their projects document them:

- nbgitpuller (its link generator, ``docs/_static/link_gen/link.js``, and ``docs/topic/url-options.rst``)::

      https://HUB/hub/user-redirect/git-pull?repo=REPO&urlpath=lab/tree/REPO_DIR/PATH&branch=BRANCH

  with the query encoded as HTML forms encode it (``URLSearchParams``). ``REPO_DIR`` is the folder the clone lands
  in: the repository's last path component without ``.git``. Without ``branch`` nbgitpuller pulls the
  repository's default branch.
- Binder (BinderHub's launch client, ``labpath`` opens a file in JupyterLab)::

      https://mybinder.org/v2/gh/OWNER/REPO/BRANCH?labpath=PATH

  ``BRANCH`` defaults to ``HEAD`` (the default branch); a branch with ``/`` is URL-escaped.

Example::

    >>> from tl_lab.links import nbgitpuller_link, binder_link
    >>> nbgitpuller_link(hub="https://hub.example.edu", repo="https://github.com/me/course",
    ...                  path="notebooks/00_start_here.ipynb", branch="main")
    'https://hub.example.edu/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fme%2Fcourse&urlpath=lab%2Ftree%2Fcourse%2Fnotebooks%2F00_start_here.ipynb&branch=main'
    >>> binder_link(repo="https://github.com/me/course", path="notebooks/00_start_here.ipynb")
    'https://mybinder.org/v2/gh/me/course/HEAD?labpath=notebooks%2F00_start_here.ipynb'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, quote_plus, urlencode, urlsplit

__all__ = ["CourseLinks", "binder_link", "github_repo", "nbgitpuller_link", "repo_dir"]

App = Literal["lab", "notebook"]
_APPS: dict[str, str] = {"lab": "lab/tree/", "notebook": "tree/"}
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:(?P<path>[^\s]+)$")  # git@github.com:owner/repo.git
_BAD_REF = re.compile(r"(^[-/.])|(\.\.)|(//)|([\s~^:?*\[\\\x00-\x1f\x7f])|(@\{)|([/.]$)|(\.lock$)")


def _http_url(value: str, what: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} is missing; pass a web address such as {example!r}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} {value!r} is not a web address; write it in full, e.g. {example!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} {value!r} has a '?' or '#' part; pass the address alone, e.g. {example!r}")
    return value.strip()


def _hub_base(hub: str) -> str:
    hub = _http_url(hub, "the hub URL", "https://hub.example.edu")
    base = hub.rstrip("/")
    path = urlsplit(base).path
    cut = re.search(r"/(hub|user)(/.*)?$", path)
    if cut:
        fixed = base[: len(base) - len(path)] + path[: cut.start()]
        raise ValueError(f"the hub URL {hub!r} points inside the hub ({cut.group(0)!r}); pass the hub's base address "
                         f"alone: {fixed!r}")
    return base


def _repo(repo: str) -> str:
    if not isinstance(repo, str) or not repo.strip():
        raise ValueError("the repository is missing; pass the URL you would `git clone`, e.g. "
                         "'https://github.com/OWNER/REPO'")
    repo = repo.strip()
    if _SCP_LIKE.match(repo):
        return repo
    parts = urlsplit(repo)
    if parts.scheme not in ("http", "https", "git", "ssh") or not parts.netloc or parts.path.strip("/") == "":
        hint = f"https://github.com/{repo.strip('/')}" if re.fullmatch(r"[\w.-]+/[\w.-]+", repo) else \
            "https://github.com/OWNER/REPO"
        raise ValueError(f"the repository {repo!r} is not a URL git can clone; pass it in full, e.g. {hint!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"the repository URL {repo!r} has a '?' or '#' part; pass the clone URL alone")
    return repo


def repo_dir(repo: str) -> str:
    """The folder nbgitpuller clones ``repo`` into: its last path component without ``.git``.

        >>> repo_dir("https://github.com/me/course.git"), repo_dir("git@github.com:me/course")
        ('course', 'course')
    """
    repo = _repo(repo)
    match = _SCP_LIKE.match(repo)
    path = match.group("path") if match else urlsplit(repo).path
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name[: -len(".git")] if name.endswith(".git") else name


def github_repo(repo: str) -> tuple[str, str] | None:
    """``(owner, name)`` when ``repo`` is a GitHub repository (URL, ``git@github.com:`` or ``OWNER/REPO``), else None.

        >>> github_repo("https://github.com/me/course.git"), github_repo("https://gitlab.com/me/course")
        (('me', 'course'), None)
    """
    text = repo.strip() if isinstance(repo, str) else ""
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        owner, name = text.split("/")
    else:
        match = _SCP_LIKE.match(text)
        if match:
            if not text.split("@", 1)[1].startswith("github.com:"):
                return None
            path = match.group("path")
        else:
            parts = urlsplit(text)
            if parts.netloc.lower() not in ("github.com", "www.github.com"):
                return None
            path = parts.path
        pieces = [p for p in path.split("/") if p]
        if len(pieces) != 2:
            return None
        owner, name = pieces
    name = name[: -len(".git")] if name.endswith(".git") else name
    return (owner, name) if owner and name else None


def _branch(branch: str | None) -> str | None:
    if branch is None:
        return None
    if not isinstance(branch, str) or not branch.strip():
        raise ValueError("the branch is empty; leave it out (the repository's default branch) or name one, "
                         "e.g. 'main'")
    if _BAD_REF.search(branch):
        raise ValueError(f"{branch!r} is not a valid git branch name (no spaces, '..', '~^:?*[\\' or a leading '-'); "
                         "name the branch as `git branch` lists it, e.g. 'main'")
    return branch


def _path(path: str) -> str:
    if not isinstance(path, str):
        raise ValueError(f"the path must be a string, got {type(path).__name__}")
    text = path.strip().replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise ValueError(f"the path {path!r} is absolute; give it relative to the repository's root, "
                         "e.g. 'notebooks/00_start_here.ipynb'")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"the path {path!r} leaves the repository ('..'); give it relative to the repository's "
                         "root, e.g. 'notebooks/00_start_here.ipynb'")
    return "/".join(parts)


def _app(app: str) -> str:
    if app not in _APPS:
        raise ValueError(f"unknown app {app!r}; choose one of: {', '.join(_APPS)}")
    return _APPS[app]


def nbgitpuller_link(*, hub: str, repo: str, path: str = "", branch: str | None = None, app: App = "lab") -> str:
    """A link that makes ``hub`` pull ``repo`` (at ``branch``) with nbgitpuller and open ``path`` in it.

    ``path`` is relative to the repository's root (``""``: the repository's folder); the link's ``urlpath`` adds the
    folder the clone lands in (:func:`repo_dir`), as nbgitpuller requires. ``app``: ``"lab"`` (JupyterLab) or
    ``"notebook"`` (the classic tree). The hub must have nbgitpuller installed (``pip install nbgitpuller``).
    """
    base = _hub_base(hub)
    target = "/".join(p for p in (repo_dir(repo), _path(path)) if p)
    query = {"repo": _repo(repo), "urlpath": _app(app) + target}
    branch = _branch(branch)
    if branch is not None:
        query["branch"] = branch
    return f"{base}/hub/user-redirect/git-pull?{urlencode(query, quote_via=quote_plus, safe='')}"


def binder_link(*, repo: str, path: str = "", branch: str | None = None,
                binderhub: str = "https://mybinder.org") -> str:
    """A link that builds the GitHub repository ``repo`` on a BinderHub and opens ``path`` in JupyterLab.

    ``repo``: ``https://github.com/OWNER/REPO`` or ``OWNER/REPO``; its ``binder/`` folder says what to install.
    ``branch`` defaults to ``HEAD`` (the default branch). ``path`` is relative to the repository's root.
    """
    spec = github_repo(repo) if isinstance(repo, str) else None
    if spec is None:
        raise ValueError(f"Binder links here are for GitHub repositories; {repo!r} is not one. Pass "
                         "'https://github.com/OWNER/REPO' (or 'OWNER/REPO'), or use nbgitpuller_link for other hosts")
    base = _http_url(binderhub, "the BinderHub URL", "https://mybinder.org").rstrip("/")
    ref = quote(_branch(branch) or "HEAD", safe="")
    link = f"{base}/v2/gh/{spec[0]}/{spec[1]}/{ref}"
    target = _path(path)
    return f"{link}?labpath={quote(target, safe='')}" if target else link


@dataclass(frozen=True)
class CourseLinks:
    """Where a class's lessons live, once: the repository, its branch, the lessons' folder in it, and the hub.

    ``for_lesson(name)`` gives ``{"hub": url | None, "binder": url | None}``: a hub link when ``hub`` is set, a
    Binder link when the repository is on GitHub. Construction checks every field (errors name the fix).

        >>> links = CourseLinks(repo="https://github.com/me/course", hub="https://hub.example.edu", folder="notebooks")
        >>> sorted(links.for_lesson("00_start_here.ipynb"))
        ['binder', 'hub']
    """

    repo: str
    hub: str | None = None
    branch: str | None = None
    folder: str = ""
    app: App = "lab"

    def __post_init__(self) -> None:
        _repo(self.repo)
        _branch(self.branch)
        _path(self.folder)
        _app(self.app)
        if self.hub is not None:
            _hub_base(self.hub)

    def path(self, name: str) -> str:
        return "/".join(p for p in (_path(self.folder), _path(name)) if p)

    def for_lesson(self, name: str) -> dict[str, str | None]:
        path = self.path(name)
        hub = nbgitpuller_link(hub=self.hub, repo=self.repo, path=path, branch=self.branch, app=self.app) \
            if self.hub is not None else None
        binder = binder_link(repo=self.repo, path=path, branch=self.branch) \
            if github_repo(self.repo) is not None else None
        return {"hub": hub, "binder": binder}
