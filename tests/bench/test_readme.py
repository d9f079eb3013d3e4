"""The README is for ComfyUI users: short, its two commands (run the demo, run the tests) on its first
screen, and every link and image it holds resolves (relative ones to files in this checkout, which
tests/host/test_registry.py also finds in the Registry package; repository URLs to files here)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPOSITORY = "https://github.com/blockdance/ComfyUI-BlockDance/blob/main/"
LINK = re.compile(r"(!?)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def readme_lines():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read().splitlines()


def links(lines):
    """(is_image, target) for every markdown link and image outside fenced code."""
    out, fenced = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out += [(bang == "!", target) for bang, target in LINK.findall(line)]
    return out


def anchors(lines):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in lines if line.startswith("#")}


def test_readme_is_short():
    assert len(readme_lines()) < 250


def test_the_demo_and_test_commands_are_on_the_first_screen():
    first = "\n".join(readme_lines()[:40])
    assert "COMFYUI_PATH=/path/to/ComfyUI ./scripts/demo.sh" in first
    assert "COMFYUI_PATH=/path/to/ComfyUI ./scripts/test.sh" in first
    for script in ("demo.sh", "test.sh"):
        assert os.access(os.path.join(ROOT, "scripts", script), os.X_OK), script


def test_every_link_and_image_resolves():
    lines = readme_lines()
    found = links(lines)
    assert any(image for image, _ in found) and len(found) > 5, found   # the parser sees them
    broken = []
    for image, target in found:
        if target.startswith("#"):
            ok = target[1:] in anchors(lines)
        elif target.startswith(REPOSITORY):
            ok = not image and os.path.exists(os.path.join(ROOT, target[len(REPOSITORY):].split("#")[0]))
        elif re.match(r"[a-z]+:", target):
            ok = not image    # images are files of the pack, never fetched from elsewhere
        else:
            ok = os.path.exists(os.path.join(ROOT, target.split("#")[0]))
        if not ok:
            broken.append(target)
    assert broken == []


def test_links_in_docs_and_contributing_resolve():
    """docs/*.md and CONTRIBUTING.md link to each other, to files and to the README's headings."""
    readme_anchors = anchors(readme_lines())
    pages = [os.path.join(ROOT, "CONTRIBUTING.md")] + [os.path.join(ROOT, "docs", n)
                                                        for n in sorted(os.listdir(os.path.join(ROOT, "docs")))
                                                        if n.endswith(".md")]
    broken = []
    for page in pages:
        with open(page, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for _, target in links(lines):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            ok = os.path.exists(full)
            if ok and anchor:
                ok = anchor in (readme_anchors if full == os.path.join(ROOT, "README.md") else anchors(lines))
            if not ok:
                broken.append(f"{os.path.relpath(page, ROOT)}: {target}")
    assert broken == []
