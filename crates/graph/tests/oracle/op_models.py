"""Small ONNX models, one or more per supported op family, with ONNX Runtime outputs.

usage: op_models.py OUT_DIR

For each case writes OUT_DIR/<case>/model.onnx, in<k>.npy, out<k>.npy and appends to
OUT_DIR/manifest.txt lines:
    case <name>
    input <tensor name> <file>
    output <tensor name> <file>
Models are built with onnx.helper and checked with onnx.checker before running.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(1234)
CASES = []


def rand(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, size=shape).astype(np.float32)


def case(name, opset, nodes, inputs, outputs, initializers=None):
    """inputs: {name: array}; outputs: [(name, numpy dtype)]; initializers: {name: array}."""
    CASES.append((name, opset, nodes, inputs, outputs, initializers or {}))


def elem(dtype):
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def node(op, inputs, outputs, name=None, **attrs):
    return helper.make_node(op, inputs, outputs, name=name or f"{op}_{outputs[0]}", **attrs)


# ---------------------------------------------------------------- convolution
case("conv_pads_strides_dilations_bias", 13,
     [node("Conv", ["x", "w", "b"], ["y"], pads=[1, 2, 0, 1], strides=[2, 1], dilations=[1, 2])],
     {"x": rand(2, 3, 9, 11)}, [("y", np.float32)],
     {"w": rand(4, 3, 3, 3), "b": rand(4)})
case("conv_group_same_upper", 13,
     [node("Conv", ["x", "w"], ["y"], group=2, auto_pad="SAME_UPPER", strides=[2, 2], kernel_shape=[3, 3])],
     {"x": rand(1, 4, 8, 7)}, [("y", np.float32)], {"w": rand(6, 2, 3, 3)})
case("conv_depthwise_same_lower", 11,
     [node("Conv", ["x", "w", "b"], ["y"], group=3, auto_pad="SAME_LOWER", strides=[2, 2])],
     {"x": rand(1, 3, 6, 6)}, [("y", np.float32)], {"w": rand(3, 1, 2, 2), "b": rand(3)})
case("conv_valid_1d", 13,
     [node("Conv", ["x", "w"], ["y"], auto_pad="VALID", strides=[3])],
     {"x": rand(2, 2, 17)}, [("y", np.float32)], {"w": rand(5, 2, 4)})
case("conv_3d", 13,
     [node("Conv", ["x", "w", "b"], ["y"], pads=[1, 0, 1, 1, 0, 0])],
     {"x": rand(1, 2, 4, 5, 6)}, [("y", np.float32)], {"w": rand(3, 2, 2, 3, 2), "b": rand(3)})
case("conv_transpose_pads_output_padding_group", 13,
     [node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 3], pads=[1, 0, 0, 1],
           output_padding=[1, 2], group=2)],
     {"x": rand(2, 4, 5, 4)}, [("y", np.float32)], {"w": rand(4, 3, 3, 3), "b": rand(6)})
case("conv_transpose_output_shape", 13,
     [node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=[10, 9])],
     {"x": rand(1, 2, 5, 4)}, [("y", np.float32)], {"w": rand(2, 3, 3, 3)})
case("conv_transpose_valid_dilated", 10,
     [node("ConvTranspose", ["x", "w"], ["y"], auto_pad="VALID", strides=[2, 2], dilations=[2, 1])],
     {"x": rand(1, 3, 4, 4)}, [("y", np.float32)], {"w": rand(3, 2, 2, 2)})

# ---------------------------------------------------------------- normalisation
case("batchnorm", 15,
     [node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
     {"x": rand(2, 3, 4, 5)}, [("y", np.float32)],
     {"s": rand(3), "b": rand(3), "m": rand(3), "v": rand(3, low=0.1, high=2.0)})
case("batchnorm_opset9", 9,
     [node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
     {"x": rand(1, 4, 3)}, [("y", np.float32)],
     {"s": rand(4), "b": rand(4), "m": rand(4), "v": rand(4, low=0.1, high=2.0)})
case("lrn", 13, [node("LRN", ["x"], ["y"], size=3, alpha=0.001, beta=0.75, bias=2.0)],
     {"x": rand(1, 5, 3, 3)}, [("y", np.float32)])
case("softmax_13", 13, [node("Softmax", ["x"], ["y"], axis=1)], {"x": rand(2, 5, 3)}, [("y", np.float32)])
case("softmax_11_coerced", 11, [node("Softmax", ["x"], ["y"], axis=1)], {"x": rand(2, 3, 4)}, [("y", np.float32)])
case("logsoftmax_13", 13, [node("LogSoftmax", ["x"], ["y"])], {"x": rand(3, 6)}, [("y", np.float32)])

# ---------------------------------------------------------------- activations and unary maths
ACT = [
    ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("Elu", {"alpha": 0.7}), ("Softplus", {}),
    ("Softsign", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("LeakyRelu", {"alpha": 0.2}),
    ("Selu", {}), ("HardSwish", {}), ("ThresholdedRelu", {"alpha": 0.5}), ("Exp", {}), ("Neg", {}),
    ("Abs", {}), ("Floor", {}), ("Ceil", {}), ("Round", {}), ("Sign", {}), ("Sin", {}), ("Cos", {}),
    ("Tan", {}), ("Erf", {}),
]
case("activations", 14,
     [node(op, ["x"], [f"y_{op}"], **attrs) for op, attrs in ACT],
     {"x": np.concatenate([rand(3, 17, low=-5.0, high=5.0), np.array([[-2.5, -0.5, 0.5, 1.5, 2.5] * 3 + [0.0, 3.0]],
                                                                       dtype=np.float32)])},
     [(f"y_{op}", np.float32) for op, _ in ACT])
case("positive_unary", 13,
     [node("Log", ["x"], ["y_log"]), node("Sqrt", ["x"], ["y_sqrt"]), node("Reciprocal", ["x"], ["y_rec"])],
     {"x": rand(4, 5, low=0.1, high=9.0)}, [("y_log", np.float32), ("y_sqrt", np.float32), ("y_rec", np.float32)])
case("prelu_channel_slope", 13, [node("PRelu", ["x", "slope"], ["y"])],
     {"x": rand(2, 3, 4, 4)}, [("y", np.float32)], {"slope": rand(3, 1, 1)})
case("clip_inputs_13", 13, [node("Clip", ["x", "lo", "hi"], ["y"]), node("Clip", ["x", "", "hi"], ["y2"])],
     {"x": rand(3, 7)}, [("y", np.float32), ("y2", np.float32)],
     {"lo": np.array(-0.5, dtype=np.float32), "hi": np.array(0.75, dtype=np.float32)})
case("clip_attrs_9", 9, [node("Clip", ["x"], ["y"], min=0.0, max=6.0)],
     {"x": rand(3, 7, low=-8.0, high=8.0)}, [("y", np.float32)])

# ---------------------------------------------------------------- binary and variadic maths
case("binary_broadcast", 13,
     [node("Add", ["a", "b"], ["add"]), node("Sub", ["a", "b"], ["sub"]), node("Mul", ["a", "b"], ["mul"]),
      node("Div", ["a", "b"], ["div"]), node("Pow", ["p", "b"], ["pow"])],
     {"a": rand(2, 3, 4), "b": rand(3, 1, low=0.5, high=2.0), "p": rand(2, 3, 4, low=0.1, high=3.0)},
     [("add", np.float32), ("sub", np.float32), ("mul", np.float32), ("div", np.float32), ("pow", np.float32)])
case("variadic", 13,
     [node("Min", ["a", "b", "c"], ["mn"]), node("Max", ["a", "b", "c"], ["mx"]),
      node("Sum", ["a", "b", "c"], ["sm"]), node("Mean", ["a", "b", "c"], ["me"])],
     {"a": rand(2, 1, 4), "b": rand(3, 1), "c": rand(4)},
     [("mn", np.float32), ("mx", np.float32), ("sm", np.float32), ("me", np.float32)])
case("integer_arithmetic", 13,
     [node("Add", ["i", "j"], ["add"]), node("Mul", ["i", "j"], ["mul"]), node("Div", ["i", "j"], ["div"]),
      node("Mod", ["i", "j"], ["mod"]), node("Mod", ["i", "j"], ["fmod"], fmod=1)],
     {"i": RNG.integers(-50, 50, size=(3, 4)).astype(np.int64),
      "j": np.array([3, -4, 7, -2], dtype=np.int64)},
     [("add", np.int64), ("mul", np.int64), ("div", np.int64), ("mod", np.int64), ("fmod", np.int64)])
case("compare_logic_where", 13,
     [node("Greater", ["a", "b"], ["gt"]), node("Less", ["a", "b"], ["lt"]),
      node("Equal", ["i", "j"], ["eq"]), node("And", ["gt", "eq"], ["and"]), node("Or", ["gt", "eq"], ["or"]),
      node("Not", ["lt"], ["not"]), node("Where", ["gt", "a", "b"], ["where"])],
     {"a": rand(3, 4), "b": rand(4), "i": RNG.integers(0, 3, size=(3, 4)).astype(np.int64),
      "j": RNG.integers(0, 3, size=(4,)).astype(np.int64)},
     [("eq", np.bool_), ("and", np.bool_), ("or", np.bool_), ("not", np.bool_), ("where", np.float32)])

# ---------------------------------------------------------------- pooling
case("maxpool_pads_ceil_dilations", 12,
     [node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1,
           dilations=[1, 2])],
     {"x": rand(2, 3, 9, 10)}, [("y", np.float32)])
case("maxpool_same_upper_with_indices", 10,
     [node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER")],
     {"x": rand(1, 2, 5, 7)}, [("y", np.float32), ("idx", np.int64)])
case("avgpool_exclude_pad", 11,
     [node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
     {"x": rand(1, 2, 7, 6)}, [("y", np.float32)])
case("avgpool_include_pad_ceil", 11,
     [node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
           count_include_pad=1, ceil_mode=1)],
     {"x": rand(1, 2, 8, 6)}, [("y", np.float32)])
case("avgpool_include_pad_ceil_19", 19,
     [node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
           count_include_pad=1, ceil_mode=1)],
     {"x": rand(1, 2, 8, 6)}, [("y", np.float32)])
case("avgpool_exclude_pad_ceil_same", 11,
     [node("AveragePool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_UPPER", ceil_mode=1)],
     {"x": rand(1, 2, 7, 8)}, [("y", np.float32)])
case("global_pools", 13,
     [node("GlobalAveragePool", ["x"], ["avg"]), node("GlobalMaxPool", ["x"], ["max"])],
     {"x": rand(2, 3, 5, 4)}, [("avg", np.float32), ("max", np.float32)])

# ---------------------------------------------------------------- matrix products
case("gemm_trans_bias", 13,
     [node("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=0.5, beta=2.0),
      node("Gemm", ["at", "b"], ["y2"], transA=1, transB=1)],
     {"a": rand(4, 6), "at": rand(6, 4)}, [("y", np.float32), ("y2", np.float32)],
     {"b": rand(5, 6), "c": rand(5)})
case("matmul_batched_broadcast", 13,
     [node("MatMul", ["a", "b"], ["y"]), node("MatMul", ["v", "b2"], ["y2"])],
     {"a": rand(2, 1, 3, 4), "b": rand(3, 4, 5), "v": rand(4)}, [("y", np.float32), ("y2", np.float32)],
     {"b2": rand(4, 2)})

# ---------------------------------------------------------------- reductions
case("reduce_13", 13,
     [node("ReduceSum", ["x", "axes"], ["sum"], keepdims=0), node("ReduceMean", ["x"], ["mean"], axes=[1]),
      node("ReduceMax", ["x"], ["max"], axes=[0, 2]), node("ReduceMin", ["x"], ["min"], keepdims=0),
      node("ReduceProd", ["x"], ["prod"], axes=[-1]), node("ReduceL1", ["x"], ["l1"], axes=[1]),
      node("ReduceL2", ["x"], ["l2"], axes=[2]), node("ReduceLogSumExp", ["x"], ["lse"], axes=[1]),
      node("ReduceSumSquare", ["x"], ["ss"], axes=[0])],
     {"x": rand(3, 4, 5)},
     [(n, np.float32) for n in ["sum", "mean", "max", "min", "prod", "l1", "l2", "lse", "ss"]],
     {"axes": np.array([0, -1], dtype=np.int64)})
case("reduce_18_axes_input", 18,
     [node("ReduceMean", ["x", "axes"], ["mean"]), node("ReduceLogSum", ["p", "axes"], ["ls"], keepdims=0)],
     {"x": rand(2, 3, 4), "p": rand(2, 3, 4, low=0.1, high=2.0)}, [("mean", np.float32), ("ls", np.float32)],
     {"axes": np.array([1], dtype=np.int64)})
case("argmax_argmin", 13,
     [node("ArgMax", ["x"], ["amax"], axis=1), node("ArgMin", ["x"], ["amin"], axis=-1, keepdims=0),
      node("ArgMax", ["t"], ["last"], axis=0, select_last_index=1)],
     {"x": rand(3, 5, 2), "t": np.array([[1, 3], [3, 1], [3, 3]], dtype=np.float32)},
     [("amax", np.int64), ("amin", np.int64), ("last", np.int64)])

# ---------------------------------------------------------------- shapes and data movement
case("flatten_reshape_transpose", 14,
     [node("Flatten", ["x"], ["flat"], axis=2), node("Reshape", ["x", "shape"], ["resh"]),
      node("Transpose", ["x"], ["tr"], perm=[2, 0, 3, 1]), node("Transpose", ["x"], ["rev"])],
     {"x": rand(2, 3, 4, 5)}, [("flat", np.float32), ("resh", np.float32), ("tr", np.float32), ("rev", np.float32)],
     {"shape": np.array([0, -1, 5], dtype=np.int64)})
case("squeeze_unsqueeze_13", 13,
     [node("Squeeze", ["x", "axes"], ["sq"]), node("Unsqueeze", ["x", "uaxes"], ["unsq"]),
      node("Squeeze", ["x"], ["sq_all"])],
     {"x": rand(1, 3, 1, 2)}, [("sq", np.float32), ("unsq", np.float32), ("sq_all", np.float32)],
     {"axes": np.array([2], dtype=np.int64), "uaxes": np.array([0, -1], dtype=np.int64)})
case("squeeze_unsqueeze_11", 11,
     [node("Squeeze", ["x"], ["sq"], axes=[0]), node("Unsqueeze", ["x"], ["unsq"], axes=[1, 4])],
     {"x": rand(1, 3, 2)}, [("sq", np.float32), ("unsq", np.float32)])
case("concat_split", 13,
     [node("Concat", ["a", "b", "c"], ["cat"], axis=1), node("Split", ["cat", "split"], ["s0", "s1", "s2"], axis=1),
      node("Split", ["a"], ["e0", "e1"], axis=-1)],
     {"a": rand(2, 2, 4), "b": rand(2, 3, 4), "c": rand(2, 1, 4)},
     [("cat", np.float32), ("s0", np.float32), ("s1", np.float32), ("s2", np.float32), ("e0", np.float32),
      ("e1", np.float32)],
     {"split": np.array([1, 4, 1], dtype=np.int64)})
case("split_11_attr", 11, [node("Split", ["x"], ["p", "q"], axis=0, split=[1, 2])],
     {"x": rand(3, 2)}, [("p", np.float32), ("q", np.float32)])
case("split_18_num_outputs_uneven", 18, [node("Split", ["x"], ["p", "q", "r"], axis=1, num_outputs=3)],
     {"x": rand(2, 7)}, [("p", np.float32), ("q", np.float32), ("r", np.float32)])
case("slice_13_steps", 13,
     [node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"]),
      node("Slice", ["x", "s2", "e2"], ["y2"])],
     {"x": rand(4, 6, 5)}, [("y", np.float32), ("y2", np.float32)],
     {"starts": np.array([-1, 1], dtype=np.int64), "ends": np.array([-100, 1000], dtype=np.int64),
      "axes": np.array([0, 2], dtype=np.int64), "steps": np.array([-2, 2], dtype=np.int64),
      "s2": np.array([1, 0], dtype=np.int64), "e2": np.array([3, -1], dtype=np.int64)})
case("slice_9_attrs", 9, [node("Slice", ["x"], ["y"], starts=[1, 0], ends=[3, 2], axes=[0, 2])],
     {"x": rand(4, 3, 5)}, [("y", np.float32)])
case("gather", 13,
     [node("Gather", ["x", "idx"], ["g0"], axis=0), node("Gather", ["x", "idx2"], ["g1"], axis=1)],
     {"x": rand(4, 5, 2)}, [("g0", np.float32), ("g1", np.float32)],
     {"idx": np.array([[3, -1], [0, 2]], dtype=np.int64), "idx2": np.array(-2, dtype=np.int64)})
case("pad_modes_13", 13,
     [node("Pad", ["x", "pads", "cv"], ["pc"], mode="constant"), node("Pad", ["x", "pads"], ["pr"], mode="reflect"),
      node("Pad", ["x", "pads"], ["pe"], mode="edge"), node("Pad", ["x", "crop"], ["neg"])],
     {"x": rand(1, 2, 4, 5)}, [("pc", np.float32), ("pr", np.float32), ("pe", np.float32), ("neg", np.float32)],
     {"pads": np.array([0, 0, 2, 1, 0, 1, 3, 2], dtype=np.int64), "cv": np.array(1.5, dtype=np.float32),
      "crop": np.array([0, 0, -1, 1, 0, 0, 1, -2], dtype=np.int64)})
case("pad_9_attrs", 9, [node("Pad", ["x"], ["y"], pads=[1, 0, 0, 2], value=-3.0)],
     {"x": rand(2, 3)}, [("y", np.float32)])
case("pad_18_axes", 18, [node("Pad", ["x", "pads", "", "axes"], ["y"], mode="reflect")],
     {"x": rand(2, 4, 5)}, [("y", np.float32)],
     {"pads": np.array([1, 2, 3, 1], dtype=np.int64), "axes": np.array([-1, 1], dtype=np.int64)})
case("pad_19_wrap", 19, [node("Pad", ["x", "pads"], ["y"], mode="wrap")],
     {"x": rand(2, 3)}, [("y", np.float32)], {"pads": np.array([1, 2, 0, 4], dtype=np.int64)})
case("avgpool_19_dilations", 19,
     [node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 1], pads=[1, 0, 0, 1])],
     {"x": rand(1, 1, 6, 5)}, [("y", np.float32)])
case("reduce_18_noop_empty_axes", 18,
     [node("ReduceMax", ["x", "empty"], ["same"], noop_with_empty_axes=1), node("ReduceSum", ["x"], ["all"])],
     {"x": rand(2, 3)}, [("same", np.float32), ("all", np.float32)],
     {"empty": np.array([], dtype=np.int64)})
case("expand_tile", 13,
     [node("Expand", ["x", "shape"], ["ex"]), node("Tile", ["x", "reps"], ["ti"])],
     {"x": rand(3, 1)}, [("ex", np.float32), ("ti", np.float32)],
     {"shape": np.array([2, 1, 4], dtype=np.int64), "reps": np.array([2, 3], dtype=np.int64)})
case("dynamic_shape_chain", 13,
     [node("Shape", ["x"], ["shp"]), node("Gather", ["shp", "zero"], ["batch"], axis=0),
      node("Unsqueeze", ["batch", "zero_axes"], ["batch1"]), node("Concat", ["batch1", "minus1"], ["target"], axis=0),
      node("Reshape", ["x", "target"], ["y"]), node("Cast", ["shp"], ["shp_f"], to=TensorProto.FLOAT),
      node("ConstantOfShape", ["shp"], ["filled"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25])),
      node("Identity", ["filled"], ["same"]), node("Dropout", ["x"], ["drop"])],
     {"x": rand(3, 2, 4)}, [("y", np.float32), ("shp_f", np.float32), ("same", np.float32), ("drop", np.float32)],
     {"zero": np.array(0, dtype=np.int64), "zero_axes": np.array([0], dtype=np.int64),
      "minus1": np.array([-1], dtype=np.int64)})
case("shape_15_start_end_and_constant", 15,
     [node("Shape", ["x"], ["shp"], start=1, end=-1),
      helper.make_node("Constant", [], ["k"], name="const_k", value_floats=[0.5, -1.0, 2.0]),
      node("Mul", ["x", "k"], ["scaled"]), node("Cast", ["shp"], ["shp32"], to=TensorProto.INT32)],
     {"x": rand(2, 5, 3)}, [("shp32", np.int32), ("scaled", np.float32)])

# ---------------------------------------------------------------- resize
case("resize_nearest_asymmetric_floor", 13,
     [node("Resize", ["x", "", "scales"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric",
           nearest_mode="floor")],
     {"x": rand(1, 2, 3, 4)}, [("y", np.float32)], {"scales": np.array([1, 1, 2, 3], dtype=np.float32)})
case("resize_nearest_half_pixel_sizes", 13,
     [node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")],
     {"x": rand(1, 1, 5, 7)}, [("y", np.float32)], {"sizes": np.array([1, 1, 8, 3], dtype=np.int64)})
case("resize_linear_half_pixel", 13,
     [node("Resize", ["x", "", "scales"], ["y"], mode="linear")],
     {"x": rand(1, 2, 4, 5)}, [("y", np.float32)], {"scales": np.array([1, 1, 2.5, 0.6], dtype=np.float32)})
case("resize_linear_align_corners", 11,
     [node("Resize", ["x", "roi", "scales"], ["y"], mode="linear", coordinate_transformation_mode="align_corners")],
     {"x": rand(1, 1, 4, 4)}, [("y", np.float32)],
     {"roi": np.array([], dtype=np.float32), "scales": np.array([1, 1, 2, 1.5], dtype=np.float32)})
case("resize_linear_pytorch_half_pixel", 13,
     [node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", coordinate_transformation_mode="pytorch_half_pixel")],
     {"x": rand(1, 2, 3, 6)}, [("y", np.float32)], {"sizes": np.array([1, 2, 7, 1], dtype=np.int64)})
case("resize_cubic", 13,
     [node("Resize", ["x", "", "scales"], ["y"], mode="cubic"),
      node("Resize", ["x", "", "scales"], ["y_ex"], name="cubic_exclude", mode="cubic", exclude_outside=1,
           cubic_coeff_a=-0.5)],
     {"x": rand(1, 1, 5, 6)}, [("y", np.float32), ("y_ex", np.float32)],
     {"scales": np.array([1, 1, 1.6, 2], dtype=np.float32)})
case("resize_tf_crop_and_resize", 13,
     [node("Resize", ["x", "roi", "scales"], ["y"], mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
           extrapolation_value=-7.0)],
     {"x": rand(1, 1, 4, 5)}, [("y", np.float32)],
     {"roi": np.array([0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3], dtype=np.float32),
      "scales": np.array([1, 1, 1.5, 1.2], dtype=np.float32)})
case("resize_19_half_pixel_symmetric", 19,
     [node("Resize", ["x", "", "scales"], ["y"], mode="linear", coordinate_transformation_mode="half_pixel_symmetric")],
     {"x": rand(1, 2, 3, 5)}, [("y", np.float32)], {"scales": np.array([1, 1, 2.3, 0.7], dtype=np.float32)})
case("resize_nearest_round_prefer_ceil_down", 13,
     [node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", nearest_mode="round_prefer_ceil"),
      node("Resize", ["x", "", "", "sizes"], ["y_ceil"], name="resize_ceil", mode="nearest", nearest_mode="ceil",
           coordinate_transformation_mode="align_corners")],
     {"x": rand(1, 1, 9, 8)}, [("y", np.float32), ("y_ceil", np.float32)],
     {"sizes": np.array([1, 1, 4, 3], dtype=np.int64)})
case("resize_10_nearest", 10, [node("Resize", ["x", "scales"], ["y"], mode="nearest")],
     {"x": rand(1, 2, 3, 3)}, [("y", np.float32)], {"scales": np.array([1, 1, 2, 2], dtype=np.float32)})
case("upsample_9_nearest", 9, [node("Upsample", ["x", "scales"], ["y"], mode="nearest")],
     {"x": rand(1, 2, 3, 2)}, [("y", np.float32)], {"scales": np.array([1, 1, 3, 2], dtype=np.float32)})
case("upsample_9_linear", 9, [node("Upsample", ["x", "scales"], ["y"], mode="linear")],
     {"x": rand(1, 1, 3, 4)}, [("y", np.float32)], {"scales": np.array([1, 1, 2, 2], dtype=np.float32)})


def build(name, opset, nodes, inputs, outputs, initializers, shapes):
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(k, elem(v.dtype), list(v.shape)) for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, elem(t), s) for (k, t), s in zip(outputs, shapes)],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    ir = {9: 4, 10: 5, 11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8}.get(opset, 9)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def write_case(root, name, opset, nodes, inputs, outputs, initializers, manifest):
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    # First run without output shapes to learn them, then write the checked model with them.
    probe = build(name, opset, nodes, inputs, outputs, initializers, [None] * len(outputs))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    results = session.run([k for k, _ in outputs], inputs)
    model = build(name, opset, nodes, inputs, outputs, initializers, [list(r.shape) for r in results])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, d / "model.onnx")
    manifest.append(f"case {name}")
    for k, (iname, value) in enumerate(inputs.items()):
        np.save(d / f"in{k}.npy", value)
        manifest.append(f"input {iname} in{k}.npy")
    for k, ((oname, _), value) in enumerate(zip(outputs, results)):
        np.save(d / f"out{k}.npy", value)
        manifest.append(f"output {oname} out{k}.npy")


def main():
    root = Path(sys.argv[1])
    manifest = []
    for c in CASES:
        write_case(root, *c, manifest)
    (root / "manifest.txt").write_text("\n".join(manifest) + "\n")
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}: {len(CASES)} cases")


if __name__ == "__main__":
    main()
