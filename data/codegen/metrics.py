"""The code-generation example's own metric: a plain function, called once per example."""

import ast

from assay.metrics.code import extract_code


def style(output, reference, row):
    """Does the answer define the function the problem asks for, and how long is it?

    Returns two named scores, so the pipeline gets the metrics ``style.defines_entry_point``
    (higher is better) and ``style.lines`` (lower is better, see the config's args).
    """
    code = extract_code(output)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return {"defines_entry_point": 0, "lines": len(code.splitlines())}
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return {"defines_entry_point": row["entry_point"] in names, "lines": len(code.strip().splitlines())}
