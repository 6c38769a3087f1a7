"""README's Python examples run: the softmax regression trains, the training-loop
statistics come out."""

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def test_readme_softmax_regression_example():
    text = README.read_text()
    block = re.search(r"```python\n(import torch, xent\.torch as xt\n.*?)```", text, re.S)
    assert block, "README's xent.torch example is missing"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), "README.md", "exec"), {})
    m = re.fullmatch(r"loss (\S+), accuracy (\S+)", out.getvalue().strip())
    assert m, out.getvalue()
    # README quotes this machine's output; another BLAS may differ in the last digit
    assert float(m.group(1)) < 0.3 and float(m.group(2)) > 0.95, m.group(0)


def test_readme_training_statistics_example():
    text = README.read_text()
    block = re.search(r"```python\n(import torch\nimport xent\.torch as xt\n.*?)```", text, re.S)
    assert block and "return_stats=True" in block.group(1), "README's stats example is missing"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), "README.md", "exec"), {})
    m = re.fullmatch(r"lse (\S+), entropy (\S+), accuracy (\S+), tokens 52", out.getvalue().strip())
    assert m, out.getvalue()
    # logits of std 0.5 over 1000 classes: lse ≈ ln 1000 + 0.125, entropy ≈ lse − 0.25
    assert abs(float(m.group(1)) - 7.03) < 0.05 and abs(float(m.group(2)) - 6.78) < 0.05
