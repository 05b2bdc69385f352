"""Files the finishing tests make for themselves: .cube LUTs and tiny ONNX models."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_cube(path: Path, size: int = 17, fn=lambda r, g, b: (b, g, r), title: str = "test") -> Path:
    """A 3D .cube whose output at (r, g, b) in 0..1 is fn(r, g, b); the default swaps red
    and blue (exact under any interpolation: it is linear)."""
    x = np.linspace(0.0, 1.0, size)
    lines = [f'TITLE "{title}"', f"LUT_3D_SIZE {size}"]
    for b in x:  # red changes fastest
        for g in x:
            for r in x:
                lines.append(" ".join(f"{v:.6f}" for v in fn(r, g, b)))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_onnx(path: Path, shape=(1, 3, 512, 512), op: str = "Identity") -> Path:
    """A one-node ONNX model: input 'x' of `shape` (ints, or names for dynamic axes) to
    output 'y' of the same shape, through `op` (Identity, or Neg: a model that changes
    the face)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "face", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # readable by onnxruntime 1.31
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
