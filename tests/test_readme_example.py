"""The README's "Adding a fusion method" example runs and passes the fusion contract."""
import re
from pathlib import Path

from i2m2bench import FUSIONS
from i2m2bench.testing import check_fusion

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_fusion_example_meets_the_contract():
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "FUSIONS.register" in b]
    try:
        exec(compile(code, "README.md", "exec"), {})
        check_fusion("sum_fusion")
    finally:
        FUSIONS.remove("sum_fusion")
