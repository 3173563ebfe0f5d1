//! Graphs and values for the tests of our ops (`conv3x3s2.rs`,
//! `depthwise.rs`, `pointwise.rs`): each is held to tract's own op on the
//! same graph.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::math;

/// `len` deterministic values in [−2, 2], in steps of 1/500.
pub(super) fn values(len: usize, seed: u32) -> Vec<f32> {
    super::xorshift(seed)
        .take(len)
        .map(|x| (x % 2001) as f32 / 500.0 - 2.0)
        .collect()
}

/// A tensor of `shape` holding [`values`].
pub(super) fn tensor(shape: &[usize], seed: u32) -> Tensor {
    tract_ndarray::Array::from_shape_vec(shape.to_vec(), values(shape.iter().product(), seed))
        .expect("the shape holds the values")
        .into_tensor()
}

/// Wires after `wire` one bin op by a constant of `rank` axes per
/// `(name, bound)`: `"max"` or `"min"`, as ONNX's `Relu` and `Clip` reach
/// the typed graph.
pub(super) fn clamps(
    model: &mut TypedModel,
    mut wire: OutletId,
    clamps: &[(&str, f32)],
    rank: usize,
) -> OutletId {
    for (n, &(name, bound)) in clamps.iter().enumerate() {
        let c = model
            .add_const(
                format!("bound{n}"),
                tract_ndarray::Array::from_elem(vec![1; rank], bound).into_tensor(),
            )
            .expect("a bound");
        let op = if name == "max" {
            math::max()
        } else {
            math::min()
        };
        wire = model
            .wire_node(format!("clamp{n}"), op, &[wire, c])
            .expect("wired")[0];
    }
    wire
}

/// `model` optimised by tract and run on `input`: every output.
pub(super) fn plan_run(model: TypedModel, input: &Tensor) -> TVec<TValue> {
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .expect("a plan");
    plan.run(tvec!(input.clone().into())).expect("a run")
}

/// `model` optimised by tract and run on `input`: the output's shape and
/// values.
pub(super) fn run(model: TypedModel, input: &Tensor) -> (Vec<usize>, Vec<f32>) {
    let result = plan_run(model, input);
    let out = result[0].try_as_plain_ram().expect("plain");
    (
        result[0].shape().to_vec(),
        out.as_slice::<f32>().expect("f32").to_vec(),
    )
}
