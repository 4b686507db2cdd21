"""Launch links (tl_lab.links) against nbgitpuller's and Binder's documented formats, and the content folder that
``tl-lab lessons --copy`` writes for nbgitpuller.

References:
- nbgitpuller's link generator (docs/_static/link_gen/link.js, ``generateRegularUrl``): ``new URL(hub)``, then
  ``searchParams.set('repo')``, ``set('urlpath')``, ``set('branch')`` (form encoding), path ``hub/user-redirect/
  git-pull``; JupyterLab's urlpath is ``'lab/tree/' + repoName + '/' + filePath``, the classic one ``'tree/' + ...``.
- nbgitpuller's docs/topic/url-options.rst: for ``https://github.com/my-user/my-repository`` and ``index.ipynb``,
  the path must be ``my-repository/index.ipynb``, not ``index.ipynb``.
- BinderHub's launch client (``labpath`` opens a file in JupyterLab) and published Binder badges.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import nbformat
import pytest

from tl_lab.links import CourseLinks, binder_link, github_repo, nbgitpuller_link, repo_dir


def _fields(url: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query, keep_blank_values=True)


# ------------------------------------------------------------------------------------------------ nbgitpuller


def test_the_link_generator_example_exactly():
    # What generateRegularUrl produces for the generator's own placeholders (hub https://hub.example.com, repo
    # https://github.com/example/test, file index.ipynb, JupyterLab) and branch main, worked out by hand from link.js.
    expected = ("https://hub.example.com/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fexample%2Ftest"
                "&urlpath=lab%2Ftree%2Ftest%2Findex.ipynb&branch=main")
    ours = nbgitpuller_link(hub="https://hub.example.com", repo="https://github.com/example/test", path="index.ipynb",
                            branch="main")
    assert ours == expected
    assert _fields(ours) == _fields(expected)
    assert list(parse_qs(urlsplit(ours).query)) == ["repo", "urlpath", "branch"]  # the generator's order


def test_the_path_starts_with_the_folder_the_clone_lands_in():
    # url-options.rst: my-repository/index.ipynb, not index.ipynb
    link = nbgitpuller_link(hub="https://hub.example.com", repo="https://github.com/my-user/my-repository",
                            path="index.ipynb")
    base, query = _fields(link)
    assert base == "https://hub.example.com/hub/user-redirect/git-pull"
    assert query == {"repo": ["https://github.com/my-user/my-repository"],
                     "urlpath": ["lab/tree/my-repository/index.ipynb"]}  # no branch: nbgitpuller's default
    classic = nbgitpuller_link(hub="https://hub.example.com", repo="https://github.com/my-user/my-repository.git",
                               path="index.ipynb", app="notebook")
    assert _fields(classic)[1]["urlpath"] == ["tree/my-repository/index.ipynb"]  # .git is not part of the folder


def test_a_published_link_parses_to_the_same_fields():
    # A link published in cybergis-compute-python-sdk's README (classic notebook, a file name with a space)
    published = ("https://cybergisx.cigi.illinois.edu/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2F"
                 "cybergis%2Fcybergis-compute-python-sdk&branch=v2&urlpath=tree%2Fcybergis-compute-python-sdk%2F"
                 "RIF_UI_NBK%2FiPython%20Widget.ipynb")
    ours = nbgitpuller_link(hub="https://cybergisx.cigi.illinois.edu",
                            repo="https://github.com/cybergis/cybergis-compute-python-sdk",
                            path="RIF_UI_NBK/iPython Widget.ipynb", branch="v2", app="notebook")
    assert _fields(ours) == _fields(published)
    assert "+" in ours and " " not in ours  # form encoding, as URLSearchParams writes a space


def test_a_hub_under_a_path_and_odd_characters_round_trip():
    link = nbgitpuller_link(hub="https://hub.callysto.ca/jupyter/", repo="git@github.com:me/course.git",
                            path="week 1/a&b #2.ipynb", branch="fall-2026")
    base, query = _fields(link)
    assert base == "https://hub.callysto.ca/jupyter/hub/user-redirect/git-pull"
    assert query == {"repo": ["git@github.com:me/course.git"], "urlpath": ["lab/tree/course/week 1/a&b #2.ipynb"],
                     "branch": ["fall-2026"]}
    assert "#" not in link and link.count("&") == 2  # the '&' and '#' of the name are encoded


@pytest.mark.parametrize("kwargs, message", [
    (dict(hub="https://hub.example.edu/hub/login"), "pass the hub's base address alone: 'https://hub.example.edu'"),
    (dict(hub="https://hub.example.edu/user/ana/lab"), "alone: 'https://hub.example.edu'"),
    (dict(hub="hub.example.edu"), "write it in full, e.g. 'https://hub.example.edu'"),
    (dict(hub="https://hub.example.edu/?next=x"), "has a '?' or '#' part"),
    (dict(repo="me/course"), "pass it in full, e.g. 'https://github.com/me/course'"),
    (dict(repo=""), "the repository is missing"),
    (dict(branch="my branch"), "is not a valid git branch name"),
    (dict(branch="-x"), "is not a valid git branch name"),
    (dict(branch=""), "leave it out (the repository's default branch)"),
    (dict(path="../secrets.ipynb"), "leaves the repository ('..')"),
    (dict(path="/home/me/a.ipynb"), "is absolute; give it relative to the repository's root"),
    (dict(app="vscode"), "unknown app 'vscode'; choose one of: lab, notebook"),
])
def test_wrong_arguments_say_what_to_pass(kwargs, message):
    args = dict(hub="https://hub.example.edu", repo="https://github.com/me/course", path="a.ipynb") | kwargs
    with pytest.raises(ValueError) as err:
        nbgitpuller_link(**args)
    assert message in str(err.value)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        nbgitpuller_link("https://hub.example.edu", "https://github.com/me/course")  # type: ignore[misc]
    with pytest.raises(TypeError):
        binder_link("https://github.com/me/course")  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ Binder


def test_binder_link_matches_a_published_badge():
    # Merck/Sapiens README badge
    assert binder_link(repo="https://github.com/Merck/Sapiens", branch="main",
                       path="notebooks/01_sapiens_antibody_infilling.ipynb") == \
        "https://mybinder.org/v2/gh/Merck/Sapiens/main?labpath=notebooks%2F01_sapiens_antibody_infilling.ipynb"
    # bitranox/lib_layered_config README badge: HEAD is the default branch
    assert binder_link(repo="bitranox/lib_layered_config", path="notebooks/Quickstart.ipynb") == \
        "https://mybinder.org/v2/gh/bitranox/lib_layered_config/HEAD?labpath=notebooks%2FQuickstart.ipynb"
    assert binder_link(repo="git@github.com:me/course.git") == "https://mybinder.org/v2/gh/me/course/HEAD"


def test_binder_escapes_a_branch_with_a_slash_and_refuses_other_hosts():
    assert binder_link(repo="https://github.com/me/course", branch="term/fall") == \
        "https://mybinder.org/v2/gh/me/course/term%2Ffall"
    with pytest.raises(ValueError, match="for GitHub repositories; 'https://gitlab.com/me/course' is not one"):
        binder_link(repo="https://gitlab.com/me/course")
    assert github_repo("https://gitlab.com/me/course") is None
    assert github_repo("https://github.com/me/course/tree/main") is None  # not a clone URL
    assert repo_dir("https://gitlab.com/group/sub/course.git") == "course"


def test_course_links_per_lesson():
    links = CourseLinks(repo="https://github.com/me/tl_lab", hub="https://hub.example.edu", folder="notebooks",
                        branch="main")
    found = links.for_lesson("03_fine_tuning_and_freezing.ipynb")
    assert _fields(found["hub"])[1]["urlpath"] == ["lab/tree/tl_lab/notebooks/03_fine_tuning_and_freezing.ipynb"]
    assert found["binder"] == ("https://mybinder.org/v2/gh/me/tl_lab/main?labpath=notebooks%2F"
                               "03_fine_tuning_and_freezing.ipynb")
    assert CourseLinks(repo="https://gitlab.com/me/c").for_lesson("a.ipynb") == {"hub": None, "binder": None}
    with pytest.raises(ValueError, match="points inside the hub"):
        CourseLinks(repo="https://github.com/me/c", hub="https://hub.example.edu/hub/")


def test_links_module_is_light_and_one_module():
    code = ("import sys; from tl_lab.links import nbgitpuller_link; import tl_lab, tl_lab.app.links; "
            "print(tl_lab.links is tl_lab.app.links is sys.modules['tl_lab.links'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]


# ------------------------------------------------------------------------------------------------ the content folder


def _lesson(path: Path, title: str, *, outputs: bool) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["tl_lab"] = {"title": title, "goal": "g"}
    cell = nbformat.v4.new_code_cell("print(1)")
    if outputs:
        cell.outputs = [nbformat.v4.new_output("stream", text="1\n")]
        cell.execution_count = 7
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"), cell]
    nbformat.write(nb, path)
    return path


def test_copy_strips_outputs_takes_small_files_and_lists_links(tmp_path):
    from tl_lab.app.lessons import SMALL_FILE_BYTES, copy_content

    src = tmp_path / "src"
    src.mkdir()
    _lesson(src / "00_a.ipynb", "First | lesson", outputs=True)
    _lesson(src / "01_b.ipynb", "Second", outputs=False)
    (src / "classes.csv").write_text("a,b\n")
    (src / "big.bin").write_bytes(b"x" * (SMALL_FILE_BYTES + 1))
    (src / ".secret").write_text("no")
    links = CourseLinks(repo="https://github.com/me/course", hub="https://hub.example.edu", folder="week1")
    dest = tmp_path / "content"
    done = copy_content(dest, source=src, links=links)
    assert sorted(p.name for p in done["lessons"]) == ["00_a.ipynb", "01_b.ipynb"]
    assert sorted(p.name for p in done["files"]) == ["README.md", "classes.csv"]
    assert [p.name for p in done["large"]] == ["big.bin"]
    assert sorted(p.name for p in dest.iterdir()) == ["00_a.ipynb", "01_b.ipynb", "README.md", "classes.csv"]
    copied = json.loads((dest / "00_a.ipynb").read_text())
    code = [c for c in copied["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert copied["metadata"]["tl_lab"]["copied_from"]["fingerprint"]  # the Lessons panel still sees the origin
    readme = (dest / "README.md").read_text()
    hub_links = [part.split(")")[0] for part in readme.split("(https://hub.example.edu")[1:]]
    assert [_fields("https://hub.example.edu" + h)[1]["urlpath"] for h in hub_links] == [
        ["lab/tree/course/week1/00_a.ipynb"], ["lab/tree/course/week1/01_b.ipynb"]]
    assert "First \\| lesson" in readme and "mybinder.org" not in readme  # a content repo has no environment
    # again: nothing replaced, everything reported as kept
    (dest / "00_a.ipynb").write_text("edited")
    again = copy_content(dest, source=src, links=links)
    assert again["lessons"] == [] and again["files"] == []
    assert sorted(p.name for p in again["kept"]) == ["00_a.ipynb", "01_b.ipynb", "README.md", "classes.csv"]
    assert (dest / "00_a.ipynb").read_text() == "edited"


def test_copy_of_the_real_lessons_is_small_and_clean(tmp_path, capsys):
    from tl_lab.app.cli import main
    from tl_lab.app.lessons import SMALL_FILE_BYTES, lessons_source

    dest = tmp_path / "course"
    assert main(["lessons", "--copy", str(dest), "--hub", "https://hub.example.edu",
                 "--repo", "https://github.com/me/course", "--branch", "main"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in lessons_source().glob("*.ipynb"))
    assert f"copied {len(names)} lesson(s)" in out
    assert sorted(p.name for p in dest.glob("*.ipynb")) == names
    for path in dest.iterdir():
        assert path.stat().st_size <= SMALL_FILE_BYTES, path
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text())
            assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
                       for c in nb["cells"] if c["cell_type"] == "code"), path.name
            # the copy is the source plus the copied_from record: no more than a few hundred bytes larger
            assert path.stat().st_size - (lessons_source() / path.name).stat().st_size < 600, path.name
    readme = (dest / "README.md").read_text()
    assert readme.count("/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fme%2Fcourse") == len(names)
    assert "&branch=main" in readme


def test_copy_command_refuses_a_hub_without_a_repository(tmp_path):
    from tl_lab.app.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["lessons", "--copy", str(tmp_path), "--hub", "https://hub.example.edu"])
    assert "--hub needs --repo" in str(exit_.value.code)
    with pytest.raises(SystemExit) as exit_:
        main(["lessons", "--copy", str(tmp_path), "--repo", "me/course", "--hub", "https://hub.example.edu"])
    assert "pass it in full, e.g. 'https://github.com/me/course'" in str(exit_.value.code)
    assert not any(tmp_path.iterdir())  # refused before writing anything
