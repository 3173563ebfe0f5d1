//! Rewrites of the typed graph that hand convolutions to our ops
//! (`depthwise.rs`, `conv3x3s2.rs`) and fold the clamps after them in.
//!
//! A convolution is replaced when its kernel and bias are constants and
//! its input shape is concrete (the plan is optimised for one shape), and
//! only when the op's own `replacing` says it computes exactly that.
//!
//! ONNX's `Relu` and `Clip` reach tract's typed graph as a `Max` and a
//! `Min` by a constant. Left alone, each is one more pass over the whole
//! tensor; folded into the convolution before it, the output is clamped
//! while it is still in cache (or in registers). Only Clip's order, a
//! `Max` then a `Min`, folds: anything else stays tract's.

use tract_onnx::prelude::*;

use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::conv::Conv;

/// Replaces every convolution of `model` that `replacing` turns into an op
/// (given the convolution, its concrete input shape, its constant kernel
/// and its constant bias, if any); returns how many it replaced.
pub(super) fn replace_convs<T: TypedOp>(
    model: &mut TypedModel,
    replacing: impl Fn(&Conv, &[usize], &Tensor, Option<&Tensor>) -> Option<T>,
) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let input = model.outlet_fact(node.inputs[0])?;
        let Some(shape) = input.shape.as_concrete() else {
            continue;
        };
        if input.datum_type != f32::datum_type() || node.inputs.len() < 2 {
            continue;
        }
        let Some(kernel) = model.outlet_fact(node.inputs[1])?.konst.clone() else {
            continue;
        };
        let bias = match node.inputs.get(2) {
            Some(&b) => match model.outlet_fact(b)?.konst.clone() {
                Some(t) => Some(t),
                None => continue,
            },
            None => None,
        };
        let Some(op) = replacing(conv, shape, &kernel, bias.as_deref()) else {
            continue;
        };
        let node = node.clone();
        TypedModelPatch::replace_single_op(model, &node, &node.inputs[..1], op)?.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// A convolution's bias as one f32 per output channel: ONNX's, a scalar
/// broadcast, or zeros when it has none; `None` for any other kind.
pub(super) fn bias_per_channel(bias: Option<&Tensor>, channels: usize) -> Option<Tensor> {
    match bias {
        Some(b) if b.datum_type() == f32::datum_type() && b.len() == channels => {
            b.clone().into_shape(&[channels]).ok()
        }
        Some(b) if b.datum_type() == f32::datum_type() && b.len() == 1 => {
            let v = *b.try_as_plain_ram().ok()?.as_slice::<f32>().ok()?.first()?;
            Some(tract_ndarray::Array1::from_elem(channels, v).into_tensor())
        }
        Some(_) => None,
        None => Tensor::zero::<f32>(&[channels]).ok(),
    }
}

/// An op of ours that can apply `max(low)` then `min(high)` to its output
/// (bounds as `f32` bits, so the op stays `Eq` and `Hash`).
pub(super) trait ClampFold: TypedOp + Clone {
    fn bounds(&self) -> (Option<u32>, Option<u32>);
    fn with_bounds(&self, low: Option<u32>, high: Option<u32>) -> Self;
    /// Whether a clamp on the op's output is still one it can apply.
    fn takes_clamps(&self) -> bool {
        true
    }
}

/// Folds every clamp that follows an op of type `T` into it; returns how
/// many it folded.
pub(super) fn fuse_clamps<T: ClampFold>(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    while let Some((node, op)) = next_clamp::<T>(model)? {
        TypedModelPatch::fuse_with_next(model, &node, op)?.apply(model)?;
        fused += 1;
    }
    Ok(fused)
}

/// A `T` node whose only successor is a clamp it can take, with the op that
/// does both.
fn next_clamp<T: ClampFold>(model: &TypedModel) -> TractResult<Option<(TypedNode, T)>> {
    for node in model.nodes() {
        let Some(op) = node.op_as::<T>().filter(|op| op.takes_clamps()) else {
            continue;
        };
        let Some((name, bound)) = next_constant(model, node)? else {
            continue;
        };
        let bound = match bound
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec))
        {
            Ok(v) if v.len() == 1 => v[0].to_bits(),
            _ => continue,
        };
        let (low, high) = op.bounds();
        let fused = match &*name {
            "Max" if low.is_none() && high.is_none() => op.with_bounds(Some(bound), None),
            "Min" if high.is_none() => op.with_bounds(low, Some(bound)),
            _ => continue,
        };
        return Ok(Some((node.clone(), fused)));
    }
    Ok(None)
}

/// When `node`'s only successor is a binary op of its output and a
/// constant that keeps its output's shape: that op's name and the
/// constant. What an op of ours can fold in (a bias, a clamp) looks so.
pub(super) fn next_constant(
    model: &TypedModel,
    node: &TypedNode,
) -> TractResult<Option<(String, Arc<Tensor>)>> {
    let Some(succ) = model.single_succ(node.id)? else {
        return Ok(None);
    };
    let Some(bin) = succ.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    let ours = OutletId::new(node.id, 0);
    let [a, b] = succ.inputs[..] else {
        return Ok(None);
    };
    if (a == ours) == (b == ours)
        || model.outlet_fact(succ.id.into())?.shape != model.outlet_fact(ours)?.shape
    {
        return Ok(None);
    }
    let other = if a == ours { b } else { a };
    Ok(model
        .outlet_fact(other)?
        .konst
        .clone()
        .map(|k| (bin.0.name().to_string(), k)))
}
