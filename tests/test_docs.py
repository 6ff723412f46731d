"""The Python examples of the README and docs/usage.md run as written, with the bundled model."""

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def first_python_block(path: Path) -> str:
    return re.search(r"```python\n(.*?)```", path.read_text(), re.DOTALL).group(1)


@pytest.mark.parametrize("doc, writes", [("README.md", ["smiley.png"]), ("docs/usage.md", ["stages.png", "fruit.gif", "stage1.png"])])
def test_the_python_example_runs_as_written(doc, writes, tmp_path, monkeypatch):
    shutil.copy(ROOT / "assets/examples/reference_bird.png", tmp_path / "reference.png")
    shutil.copy(ROOT / "assets/examples/sketch_disc.png", tmp_path / "layout.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NVG_MODEL", str(ROOT / "weights/emoji32"))
    exec(compile(first_python_block(ROOT / doc), doc, "exec"), {"__name__": "docs_example"})
    for name in writes:  # the example ran to its end
        assert (tmp_path / name).stat().st_size > 0, name


def test_the_model_card_has_hugging_face_metadata_and_the_sections_people_look_for():
    yaml = pytest.importorskip("yaml")
    card = (ROOT / "weights/emoji32/MODEL_CARD.md").read_text()
    front, body = card.removeprefix("---\n").split("\n---\n", 1)
    metadata = yaml.safe_load(front)
    assert {"license", "library_name", "tags", "datasets", "metrics"} <= metadata.keys()
    for section in ("## Intended use and limitations", "## Training data", "## Evaluation", "## Citation"):
        assert section in body, section


def test_the_readme_stays_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    for picture in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        assert (ROOT / picture).is_file(), picture  # every picture it shows is committed
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


def test_the_readme_installs_the_wheel_of_this_version():
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    wheels = re.findall(r"nvg_studio-([\w.]+)-py3-none-any\.whl", (ROOT / "README.md").read_text())
    assert wheels and set(wheels) == {version}
