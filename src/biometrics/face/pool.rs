//! YuNet's 2×2 stride-2 max pools, run by our own op instead of tract's.
//!
//! Why: profiling the face bench (issue 19, `perf record` on
//! `cargo bench --bench face`) put tract 0.23.9's `maxpool_2x2_f32` at
//! 10 % of all samples. Its vector path covers stride 1 only; YuNet's four
//! pools are stride 2 (16×160×160, 64×80×80, 64×40×40, 64×20×20 at
//! 320×320), which take its scalar walk, with two bounds checks per tap.
//! A stride-2 pool of a contiguous NCHW plane is two rows folded pairwise:
//! written that way, safe Rust, the compiler vectorises it.
//!
//! The op computes the same values as tract's (the max of the same four
//! taps, every window fully inside: `Valid` padding drops an odd last row
//! or column as tract does), so detections do not move; the test below
//! holds it to tract's op bit for bit. Only pools of exactly this shape are
//! replaced ([`replace_max_pools`]); any other stays tract's.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{MaxPool, PaddingSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Max pool, kernel 2×2, stride 2, no padding, no dilation, over an NCHW
/// f32 tensor of rank 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MaxPool2x2S2;

impl MaxPool2x2S2 {
    /// Whether `pool` is exactly what this op computes.
    fn replaces(pool: &MaxPool) -> bool {
        let spec = &pool.pool_spec;
        pool.with_index_outputs.is_none()
            && spec.data_format == DataFormat::NCHW
            && spec.kernel_shape[..] == [2, 2]
            && spec.strides()[..] == [2, 2]
            && spec.dilations()[..] == [1, 1]
            && matches!(spec.padding, PaddingSpec::Valid)
    }
}

/// Pools each NCHW plane of `input` (`planes` of `h`×`w`) into `output`
/// (`planes` of `h/2`×`w/2`).
fn pool_planes(input: &[f32], output: &mut [f32], h: usize, w: usize) {
    let (oh, ow) = (h / 2, w / 2);
    if oh == 0 || ow == 0 {
        return;
    }
    for (plane, out_plane) in input
        .chunks_exact(h * w)
        .zip(output.chunks_exact_mut(oh * ow))
    {
        for (oy, out_row) in out_plane.chunks_exact_mut(ow).enumerate() {
            let top = &plane[2 * oy * w..][..2 * ow];
            let bottom = &plane[(2 * oy + 1) * w..][..2 * ow];
            for ((o, t), b) in out_row
                .iter_mut()
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                // tract's order of the taps: the row above, then below.
                *o = t[0].max(t[1]).max(b[0]).max(b[1]);
            }
        }
    }
}

impl Op for MaxPool2x2S2 {
    fn name(&self) -> StaticName {
        "LatchdMaxPool2x2S2".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2x2S2 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext<'_>, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let &[n, c, h, w] = input.shape() else {
            bail!("2×2 max pool wants an NCHW input, got {:?}", input.shape());
        };
        let mut output = Tensor::zero::<f32>(&[n, c, h / 2, w / 2])?;
        {
            let plain = input.try_as_plain_ram()?;
            let mut out = output.try_as_plain_ram_mut()?;
            pool_planes(plain.as_slice::<f32>()?, out.as_slice_mut::<f32>()?, h, w);
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for MaxPool2x2S2 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let input = inputs[0];
        if input.datum_type != f32::datum_type() || input.rank() != 4 {
            bail!("2×2 max pool wants a rank-4 f32 input, got {input:?}");
        }
        let mut shape: TVec<TDim> = input.shape.iter().cloned().collect();
        shape[2] = shape[2].clone() / 2;
        shape[3] = shape[3].clone() / 2;
        Ok(tvec!(f32::fact(shape)))
    }
}

/// Replaces every max pool of `model` that [`MaxPool2x2S2`] computes with
/// it; returns how many it replaced.
pub(super) fn replace_max_pools(model: &mut TypedModel) -> TractResult<usize> {
    let targets: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| {
            n.op_as::<MaxPool>().is_some_and(MaxPool2x2S2::replaces)
                && model
                    .outlet_fact(n.inputs[0])
                    .is_ok_and(|f| f.datum_type == f32::datum_type() && f.rank() == 4)
        })
        .map(|n| n.id)
        .collect();
    for &id in &targets {
        let node = model.node(id).clone();
        TypedModelPatch::replace_single_op(model, &node, &node.inputs, MaxPool2x2S2)?
            .apply(model)?;
    }
    Ok(targets.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cnn::PoolSpec;

    fn tract_pool(channels: usize) -> MaxPool {
        MaxPool {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![2, 2],
                padding: PaddingSpec::Valid,
                dilations: None,
                strides: Some(tvec![2, 2]),
                input_channels: channels,
                output_channels: channels,
            },
            with_index_outputs: None,
        }
    }

    /// Deterministic values with repeats, negatives, ±0 and large magnitudes.
    fn input(shape: [usize; 4]) -> Tensor {
        let len: usize = shape.iter().product();
        let values: Vec<f32> = super::super::xorshift(0x9e37_79b9)
            .take(len)
            .map(|x| (x % 2001) as f32 / 7.0 - 140.0)
            .collect();
        tract_ndarray::Array::from_shape_vec(shape.to_vec(), values)
            .expect("the shape holds the values")
            .into_tensor()
    }

    fn run<O: TypedOp>(op: O, input: &Tensor) -> Vec<u32> {
        let mut model = TypedModel::default();
        let source = model
            .add_source("x", f32::fact(input.shape()))
            .expect("a source");
        let out = model.wire_node("pool", op, &[source]).expect("wired");
        model.select_output_outlets(&out).expect("an output");
        let plan = model.into_runnable().expect("a plan");
        let result = plan.run(tvec!(input.clone().into())).expect("a run");
        let out = result[0].try_as_plain_ram().expect("plain");
        let values = out.as_slice::<f32>().expect("f32 values");
        let mut bits: Vec<u32> = result[0].shape().iter().map(|&d| d as u32).collect();
        bits.extend(values.iter().map(|v| v.to_bits()));
        bits
    }

    #[test]
    fn the_pool_gives_tracts_values_bit_for_bit() {
        // YuNet's first pool, and odd sizes (the last row/column dropped).
        for shape in [[1, 16, 160, 160], [1, 3, 7, 9], [2, 2, 5, 4], [1, 1, 2, 3]] {
            let x = input(shape);
            // Shape, then every value's bits.
            assert_eq!(
                run(MaxPool2x2S2, &x),
                run(tract_pool(shape[1]), &x),
                "{shape:?}"
            );
        }
    }

    #[test]
    fn only_the_two_by_two_stride_two_valid_pool_is_replaced() {
        let mut same = tract_pool(4);
        same.pool_spec.padding = PaddingSpec::SameUpper;
        let mut stride_one = tract_pool(4);
        stride_one.pool_spec.strides = None;
        let mut three = tract_pool(4);
        three.pool_spec.kernel_shape = tvec![3, 3];
        let mut nhwc = tract_pool(4);
        nhwc.pool_spec.data_format = DataFormat::NHWC;
        let mut model = TypedModel::default();
        let mut wire = model
            .add_source("x", f32::fact([1, 4, 32, 32]))
            .expect("a source");
        for (name, op) in [
            ("kept_same", same),
            ("kept_stride_one", stride_one),
            ("kept_three", three),
            ("replaced", tract_pool(4)),
        ] {
            wire = model.wire_node(name, op, &[wire]).expect("wired")[0];
        }
        let mut nhwc_model = TypedModel::default();
        let x = nhwc_model
            .add_source("x", f32::fact([1, 32, 32, 4]))
            .expect("a source");
        nhwc_model.wire_node("kept", nhwc, &[x]).expect("wired");

        assert_eq!(replace_max_pools(&mut model).expect("patched"), 1);
        assert_eq!(replace_max_pools(&mut nhwc_model).expect("patched"), 0);
        let kinds: Vec<&str> = model
            .nodes()
            .iter()
            .filter(|n| !n.inputs.is_empty())
            .map(|n| {
                if n.op_is::<MaxPool2x2S2>() {
                    "ours"
                } else {
                    "tract"
                }
            })
            .collect();
        assert_eq!(kinds, ["tract", "tract", "tract", "ours"]);
    }
}
