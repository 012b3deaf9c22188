"""Load a generated doc page's builder (docs/build_*.py) and render its page into a scratch folder,
for the tests that hold the committed page to what the builder produces now."""
import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def load_builder(script: str):
    """The module docs/`script` (e.g. "build_real_models.py"), freshly executed."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, DOCS / script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_page(script: str, img_dir: Path):
    """(builder module, page text, figure paths drawn into `img_dir`)."""
    mod = load_builder(script)
    page, drawn = mod.generate(img_dir)
    return mod, page, drawn
