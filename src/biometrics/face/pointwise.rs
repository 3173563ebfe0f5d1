//! The models' pointwise (1×1) convolutions, run by our own op instead of
//! tract's matrix products.
//!
//! Why: both models are mostly 1×1 convolutions. tract 0.23.9 runs each as
//! a matrix product whose activations it first packs into panels for its
//! kernel (an `OptMatMulPack` per layer: 1.4 of the two models' 12 ms in
//! s42's per-op timing), and its kernel puts output channels along the
//! vector lanes, so a layer of a few hundred pixels and channels ran at 40
//! to 55 GMAC/s where the core does twice that.
//!
//! Here the activations are read where they lie: (C)HW f32 puts each input
//! channel's pixels in one contiguous row, so pixels go along the lanes. A
//! tile of 8 output channels × 3 vectors of pixels is 24 accumulators in
//! registers; for each input channel it loads three vectors of that row and
//! broadcasts the tile's 8 weights, packed once at load time so that they
//! are contiguous. A row's last part vector is computed as the whole
//! vector ending at the row's end (recomputing, with the same values, the
//! outputs before it), so no lane is masked. The loop is compiled per
//! vector unit and picked at run time (`pulp`), in safe code.
//!
//! The arithmetic is tract's, in tract's order: each output a sum from zero
//! of fused multiply-adds over the input channels in order (on a CPU
//! without them, as on x86-64 before AVX2, a multiply then an add), then
//! the bias
//! (the `Add` tract's decluttering puts after the product, folded in here),
//! then the clamp (`rewrite.rs`), then — where an `Add` of another
//! activation of the same shape follows, the embedder's residual
//! connections — that activation, added into its own buffer when the plan
//! holds no other reference to it (no output tensor allocated and
//! zero-filled, and no pass of tract's `Add`). The tests hold the op to
//! tract's values.
//!
//! What is replaced: an `EinSum` `IHW,OI->OHW` (or with a batch axis of one
//! on either side), constant f32 weights, a number of output channels that
//! is a whole number of tiles, and at least one vector of pixels. Anything
//! else (YuNet's NHWC heads, the embedder's last 1×1 layer) stays tract's.

use pulp::{Arch, Simd, WithSimd};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::rewrite::{next_constant, ClampFold};

/// Output channels per tile.
const TILE: usize = 8;
/// The widest vector unit's lanes: a layer narrower than one vector stays
/// tract's on every machine, so a plan does not depend on the CPU.
const MAX_LANES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Geometry {
    inputs: usize,
    outputs: usize,
    /// Pixels per channel: H·W.
    pixels: usize,
}

/// A 1×1 convolution: `out[o][p] = Σ_i w[o][i]·x[i][p]`, plus a bias and a
/// clamp when folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pointwise {
    geometry: Geometry,
    /// The output's shape: `[O, H, W]` or `[1, O, H, W]`, as the einsum's.
    shape: TVec<usize>,
    /// Per tile of [`TILE`] output channels, per input channel, the tile's
    /// weights: `outputs / TILE × inputs × TILE`.
    weights: Arc<Tensor>,
    /// `outputs`, when an `Add` of a constant was folded in.
    bias: Option<Arc<Tensor>>,
    /// A clamp folded in from the graph (`f32` bits; see `rewrite.rs`).
    low: Option<u32>,
    high: Option<u32>,
    /// The op's second input is added to its output, after the clamp.
    residual: bool,
}

impl Pointwise {
    /// Our op for `einsum` over an input of `input` shape with the constant
    /// `weights`, or `None` when it computes something else.
    fn replacing(einsum: &EinSum, input: &[usize], weights: &Tensor) -> Option<Self> {
        let axes = einsum.axes.to_string();
        let (inputs, h, w) = match (axes.split_once("->")?, input) {
            (("IHW,OI", _), &[c, h, w]) | (("NIHW,OI", _), &[1, c, h, w]) => (c, h, w),
            _ => return None,
        };
        let outputs = *weights.shape().first()?;
        let shape: TVec<usize> = match axes.split_once("->")?.1 {
            "OHW" => tvec![outputs, h, w],
            "NOHW" => tvec![1, outputs, h, w],
            _ => return None,
        };
        if einsum.q_params.is_some()
            || einsum.operating_dt != f32::datum_type()
            || weights.datum_type() != f32::datum_type()
            || weights.shape() != [outputs, inputs]
            || outputs == 0
            || !outputs.is_multiple_of(TILE)
            || inputs == 0
            || h * w < MAX_LANES
        {
            return None;
        }
        let plain = weights.try_as_plain_ram().ok()?;
        let by_output = plain.as_slice::<f32>().ok()?;
        let mut packed = Vec::with_capacity(outputs * inputs);
        for tile in 0..outputs / TILE {
            for i in 0..inputs {
                packed.extend((0..TILE).map(|r| by_output[(tile * TILE + r) * inputs + i]));
            }
        }
        Some(Pointwise {
            geometry: Geometry {
                inputs,
                outputs,
                pixels: h * w,
            },
            shape,
            weights: Arc::new(tract_ndarray::Array1::from_vec(packed).into_tensor()),
            bias: None,
            low: None,
            high: None,
            residual: false,
        })
    }
}

/// One evaluation: what every output is computed from, and where the
/// outputs go.
struct Layer<'a> {
    kernel: Kernel<'a>,
    data: Data<'a>,
    /// `Data::Apart`'s output holds a residual the outputs are added to.
    accumulate: bool,
}

/// The layer's constants.
#[derive(Clone, Copy)]
struct Kernel<'a> {
    g: Geometry,
    weights: &'a [f32],
    bias: Option<&'a [f32]>,
    low: Option<f32>,
    high: Option<f32>,
}

/// Where a layer reads and writes.
enum Data<'a> {
    /// A fresh output (or the residual, with `accumulate`).
    Apart {
        input: &'a [f32],
        output: &'a mut [f32],
    },
    /// The outputs over the input: same shape, and the plan held no other
    /// reference to it. Each output pixel depends on that pixel alone, so
    /// a block's outputs are gathered in `block` (every output channel ×
    /// three vectors) until every tile has read the block's pixels, then
    /// written over them. No output tensor is allocated and zero-filled,
    /// and half as many rows stream through the caches (s43: YuNet's
    /// 64-channel 80×80 layers, 1.6 MB each way, are most of its time).
    InPlace {
        both: &'a mut [f32],
        block: &'a mut [f32],
    },
}

impl WithSimd for Layer<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        multiply(simd, self);
    }
}

/// Inlined into [`WithSimd::with_simd`], so compiled once per vector unit.
#[inline(always)]
fn multiply<S: Simd>(simd: S, mut l: Layer<'_>) {
    let lanes = S::F32_LANES;
    let p = l.kernel.g.pixels;
    let vectors = p.div_ceil(lanes);
    let start = |v: usize| (v * lanes).min(p - lanes);
    // Three vectors of pixels at a time, every tile of output channels over
    // them: those pixels of every input channel stay in the first-level
    // cache while each tile's weights stream past. Four left are two
    // blocks of two, so the last vector — which overlaps the one before
    // it when the row is not whole vectors — never sits in a block of its
    // own: a block reads all it needs (its pixels, a residual) before it
    // writes, and the overlap then gets the same value twice.
    let mut v = 0;
    while v < vectors {
        match vectors - v {
            1 => tiles::<S, 1>(simd, &mut l, [start(v)]),
            2 | 4 => tiles::<S, 2>(simd, &mut l, [start(v), start(v + 1)]),
            _ => tiles::<S, 3>(simd, &mut l, [start(v), start(v + 1), start(v + 2)]),
        }
        v += if vectors - v == 4 { 2 } else { 3 };
    }
}

/// Every output channel over the `N` vectors of pixels at `at`, written
/// where `l.data` says.
#[inline(always)]
fn tiles<S: Simd, const N: usize>(simd: S, l: &mut Layer<'_>, at: [usize; N]) {
    let lanes = S::F32_LANES;
    let k = l.kernel;
    let p = k.g.pixels;
    let load = |row: &[f32], j: usize| S::as_simd_f32s(&row[j..j + lanes]).0[0];
    match &mut l.data {
        Data::Apart { input, output } => {
            let accumulate = l.accumulate;
            sums(simd, k, input, at, |channel, values| {
                let out = &mut output[channel * p..][..p];
                // A residual's vectors, all read before any is written.
                let residual: Option<[S::f32s; N]> =
                    accumulate.then(|| std::array::from_fn(|v| load(out, at[v])));
                for (v, (&value, &j)) in values.iter().zip(&at).enumerate() {
                    S::as_mut_simd_f32s(&mut out[j..j + lanes]).0[0] = match residual {
                        Some(r) => simd.add_f32s(value, r[v]),
                        None => value,
                    };
                }
            });
        }
        Data::InPlace { both, block } => {
            sums(simd, k, both, at, |channel, values| {
                for (v, &value) in values.iter().enumerate() {
                    let at = (channel * N + v) * lanes;
                    S::as_mut_simd_f32s(&mut block[at..at + lanes]).0[0] = value;
                }
            });
            let gathered = block.chunks_exact(N * lanes);
            for (out, gathered) in both.chunks_exact_mut(p).zip(gathered) {
                for (&j, value) in at.iter().zip(gathered.chunks_exact(lanes)) {
                    S::as_mut_simd_f32s(&mut out[j..j + lanes]).0[0] = load(value, 0);
                }
            }
        }
    }
}

/// Every tile of output channels over the `N` vectors of pixels at `at` of
/// `input`: hands `put` each output channel's `N` vectors, biased and
/// clamped.
#[inline(always)]
fn sums<S: Simd, const N: usize>(
    simd: S,
    k: Kernel<'_>,
    input: &[f32],
    at: [usize; N],
    mut put: impl FnMut(usize, [S::f32s; N]),
) {
    let lanes = S::F32_LANES;
    let g = k.g;
    let zero = simd.splat_f32s(0.0);
    let clamp = |v: S::f32s| {
        let v = match k.low {
            Some(low) => simd.max_f32s(v, simd.splat_f32s(low)),
            None => v,
        };
        match k.high {
            Some(high) => simd.min_f32s(v, simd.splat_f32s(high)),
            None => v,
        }
    };
    for (t, weights) in k.weights.chunks_exact(g.inputs * TILE).enumerate() {
        let mut acc = [[zero; N]; TILE];
        for (row, w) in input.chunks_exact(g.pixels).zip(weights.chunks_exact(TILE)) {
            let x: [S::f32s; N] =
                std::array::from_fn(|j| S::as_simd_f32s(&row[at[j]..at[j] + lanes]).0[0]);
            for (acc, &w) in acc.iter_mut().zip(w) {
                let w = simd.splat_f32s(w);
                for (a, &x) in acc.iter_mut().zip(&x) {
                    // Fused wherever the unit has it (AVX2, AVX-512, NEON:
                    // tract's kernels fuse there too); a multiply then an
                    // add on the scalar fallback, where a fused one is a
                    // call into libm per product.
                    *a = simd.mul_add_e_f32s(w, x, *a);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let channel = t * TILE + r;
            let bias = k.bias.map(|b| simd.splat_f32s(b[channel]));
            put(
                channel,
                std::array::from_fn(|v| {
                    clamp(match bias {
                        Some(b) => simd.add_f32s(acc[v], b),
                        None => acc[v],
                    })
                }),
            );
        }
    }
}

impl Op for Pointwise {
    fn name(&self) -> StaticName {
        "LatchdPointwise".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Pointwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext<'_>, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let residual = if self.residual {
            let r = inputs
                .pop()
                .context("pointwise convolution: no residual input")?;
            if r.shape() != &*self.shape || r.datum_type() != f32::datum_type() {
                bail!(
                    "pointwise convolution was planned for a residual of f32 {:?}, got {:?} {:?}",
                    self.shape,
                    r.datum_type(),
                    r.shape()
                );
            }
            Some(r)
        } else {
            None
        };
        let input = args_1!(inputs);
        let g = self.geometry;
        if input.len() != g.inputs * g.pixels || input.datum_type() != f32::datum_type() {
            bail!(
                "pointwise convolution was planned for {} f32 channels of {} pixels, got {:?} {:?}",
                g.inputs,
                g.pixels,
                input.datum_type(),
                input.shape()
            );
        }
        let weights = self.weights.try_as_plain_ram()?;
        let bias = self
            .bias
            .as_ref()
            .map(|b| b.try_as_plain_ram())
            .transpose()?;
        let kernel = Kernel {
            g,
            weights: weights.as_slice::<f32>()?,
            bias: bias.as_ref().map(|b| b.as_slice::<f32>()).transpose()?,
            low: self.low.map(f32::from_bits),
            high: self.high.map(f32::from_bits),
        };
        // tract hands its last consumer the only reference to a value: the
        // residual's buffer becomes the output (a copy of it when shared);
        // without one, an input of the output's shape does.
        let (input, mut output, accumulate) = match residual {
            Some(r) => {
                let r = Arc::try_unwrap(r.into_arc_tensor()).unwrap_or_else(|r| (*r).clone());
                (input.into_arc_tensor(), r, true)
            }
            None => match Arc::try_unwrap(input.into_arc_tensor()) {
                Ok(mut both) if g.inputs == g.outputs => {
                    {
                        let mut view = both.try_as_plain_ram_mut()?;
                        let mut block = vec![0f32; g.outputs * 3 * MAX_LANES];
                        let data = Data::InPlace {
                            both: view.as_slice_mut::<f32>()?,
                            block: &mut block,
                        };
                        Arch::new().dispatch(Layer {
                            kernel,
                            data,
                            accumulate: false,
                        });
                    }
                    both.set_shape(&self.shape)?;
                    return Ok(tvec!(both.into_tvalue()));
                }
                Ok(alone) => (Arc::new(alone), Tensor::zero::<f32>(&self.shape)?, false),
                Err(shared) => (shared, Tensor::zero::<f32>(&self.shape)?, false),
            },
        };
        {
            let plain = input.try_as_plain_ram()?;
            let mut out = output.try_as_plain_ram_mut()?;
            let data = Data::Apart {
                input: plain.as_slice::<f32>()?,
                output: out.as_slice_mut::<f32>()?,
            };
            Arch::new().dispatch(Layer {
                kernel,
                data,
                accumulate,
            });
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Pointwise {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        if inputs.iter().any(|i| i.datum_type != f32::datum_type()) {
            bail!("pointwise convolution wants f32, got {inputs:?}");
        }
        Ok(tvec!(f32::fact(&*self.shape)))
    }
}

impl ClampFold for Pointwise {
    fn bounds(&self) -> (Option<u32>, Option<u32>) {
        (self.low, self.high)
    }

    /// A clamp after the residual's `Add` is not one this op applies.
    fn takes_clamps(&self) -> bool {
        !self.residual
    }

    fn with_bounds(&self, low: Option<u32>, high: Option<u32>) -> Self {
        Pointwise {
            low,
            high,
            ..self.clone()
        }
    }
}

/// Replaces every einsum of `model` that [`Pointwise`] computes with it,
/// then folds into each the `Add` of a constant per output channel that
/// follows it (the convolution's bias); returns how many it replaced.
pub(super) fn replace_pointwise(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(einsum) = node.op_as::<EinSum>() else {
            continue;
        };
        let [x, w] = node.inputs[..] else {
            continue;
        };
        let input = model.outlet_fact(x)?;
        let Some(shape) = input.shape.as_concrete() else {
            continue;
        };
        if input.datum_type != f32::datum_type() {
            continue;
        }
        let Some(weights) = model.outlet_fact(w)?.konst.clone() else {
            continue;
        };
        let Some(op) = Pointwise::replacing(einsum, shape, &weights) else {
            continue;
        };
        let node = node.clone();
        TypedModelPatch::replace_single_op(model, &node, &[x], op)?.apply(model)?;
        replaced += 1;
    }
    while let Some((node, op)) = next_bias(model)? {
        TypedModelPatch::fuse_with_next(model, &node, op)?.apply(model)?;
    }
    Ok(replaced)
}

/// A pointwise node with no bias yet whose only successor adds a constant
/// per output channel (or one for all), with the op that does both.
fn next_bias(model: &TypedModel) -> TractResult<Option<(TypedNode, Pointwise)>> {
    for node in model.nodes() {
        let Some(op) = node.op_as::<Pointwise>() else {
            continue;
        };
        if op.bias.is_some() || op.low.is_some() || op.high.is_some() || op.residual {
            continue;
        }
        let Some((name, constant)) = next_constant(model, node)? else {
            continue;
        };
        if name != "Add" {
            continue;
        }
        let outputs = op.geometry.outputs;
        // Per channel: [O, 1, 1] against OHW, [1, O, 1, 1] against NOHW;
        // or one value for all.
        let rank = op.shape.len();
        let mut per_channel: TVec<usize> = tvec![1; rank];
        per_channel[rank - 3] = outputs;
        let bias = if constant.datum_type() != f32::datum_type() {
            continue;
        } else if constant.shape() == &*per_channel {
            constant.into_tensor().into_shape(&[outputs])?
        } else if constant.len() == 1 && constant.rank() <= rank {
            let v = constant.try_as_plain_ram()?.as_slice::<f32>()?[0];
            tract_ndarray::Array1::from_elem(outputs, v).into_tensor()
        } else {
            continue;
        };
        let fused = Pointwise {
            bias: Some(Arc::new(bias)),
            ..op.clone()
        };
        return Ok(Some((node.clone(), fused)));
    }
    Ok(None)
}

/// Folds into each pointwise node the `Add` of another activation of its
/// output's shape that is its only successor (a residual connection);
/// returns how many it folded. Run after the bias and clamps are folded:
/// the residual is added last.
pub(super) fn fuse_residuals(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    while let Some((node, add, residual, op)) = next_residual(model)? {
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, node.inputs[0])?;
        let r = patch.tap_model(model, residual)?;
        let out = patch.wire_node(&node.name, op, &[x, r])?[0];
        patch.shunt_outside(model, OutletId::new(add, 0), out)?;
        patch.apply(model)?;
        fused += 1;
    }
    Ok(fused)
}

/// A pointwise node with no residual yet whose only successor is an `Add`
/// of it and a non-constant f32 activation of the same shape: the node,
/// the `Add`'s id, the activation, and the op that does both.
fn next_residual(
    model: &TypedModel,
) -> TractResult<Option<(TypedNode, usize, OutletId, Pointwise)>> {
    for node in model.nodes() {
        let Some(op) = node.op_as::<Pointwise>() else {
            continue;
        };
        if op.residual {
            continue;
        }
        let Some(succ) = model.single_succ(node.id)? else {
            continue;
        };
        let Some(bin) = succ.op_as::<TypedBinOp>() else {
            continue;
        };
        let ours = OutletId::new(node.id, 0);
        let [a, b] = succ.inputs[..] else {
            continue;
        };
        if bin.0.name() != "Add" || (a == ours) == (b == ours) {
            continue;
        }
        let other = if a == ours { b } else { a };
        let (fact, added) = (
            model.outlet_fact(other)?,
            model.outlet_fact(succ.id.into())?,
        );
        if fact.konst.is_some()
            || fact.datum_type != f32::datum_type()
            || fact.shape != model.outlet_fact(ours)?.shape
            || added.shape != fact.shape
        {
            continue;
        }
        let fused = Pointwise {
            residual: true,
            ..op.clone()
        };
        return Ok(Some((node.clone(), succ.id, other, fused)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::rewrite::fuse_clamps;
    use super::super::test_graphs::{self, plan_run, run, tensor, values};
    use super::*;
    use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::math;
    use tract_onnx::tract_core::ops::nn::DataFormat;

    /// input → 1×1 convolution (constant kernel, and bias if `bias`) → one
    /// bin op by a constant per `(name, bound)`, decluttered: the einsum
    /// and `Add` the models' layers become.
    fn model(shape: &[usize], outputs: usize, bias: bool, clamps: &[(&str, f32)]) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).expect("a source");
        let wire = conv1x1(&mut model, "conv", x, shape, outputs, bias);
        let wire = test_graphs::clamps(&mut model, wire, clamps, shape.len());
        model.select_output_outlets(&[wire]).expect("an output");
        model.into_decluttered().expect("decluttered")
    }

    /// Wires a 1×1 convolution of `input` (of `shape`) to `outputs`
    /// channels, constant kernel, and bias if `bias`.
    fn conv1x1(
        model: &mut TypedModel,
        name: &str,
        input: OutletId,
        shape: &[usize],
        outputs: usize,
        bias: bool,
    ) -> OutletId {
        let (format, inputs) = match *shape {
            [_, c, _, _] => (DataFormat::NCHW, c),
            [c, _, _] => (DataFormat::CHW, c),
            _ => unreachable!("(N)CHW"),
        };
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: format,
                kernel_shape: tvec![1, 1],
                padding: PaddingSpec::Valid,
                dilations: None,
                strides: None,
                input_channels: inputs,
                output_channels: outputs,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        };
        let seed = name
            .bytes()
            .fold(0x1234_5678u32, |h, c| h.rotate_left(5) ^ u32::from(c));
        let k = model
            .add_const(format!("{name}.k"), tensor(&[outputs, inputs, 1, 1], seed))
            .expect("a kernel");
        let b = if bias {
            tensor(&[outputs], seed ^ 0x0bad_cafe)
        } else {
            Tensor::zero::<f32>(&[outputs]).expect("zeros")
        };
        let b = model.add_const(format!("{name}.b"), b).expect("a bias");
        model.wire_node(name, conv, &[input, k, b]).expect("wired")[0]
    }

    /// A residual block as the embedder's: x → 1×1 to twice the channels
    /// (with a `Relu` if `relu`) → 1×1 back → `Add` of x → the clamps in
    /// `after`. With `keep_x`, x is also the model's second output (the
    /// plan then holds a reference to it).
    fn residual_block(
        shape: &[usize],
        relu: bool,
        keep_x: bool,
        after: &[(&str, f32)],
    ) -> TypedModel {
        let channels = shape[shape.len() - 3];
        let mut wide = shape.to_vec();
        wide[shape.len() - 3] = 2 * channels;
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).expect("a source");
        let e = conv1x1(&mut model, "expand", x, shape, 2 * channels, true);
        let e = if relu {
            let zero = model
                .add_const(
                    "zero",
                    tract_ndarray::Array::from_elem(vec![1; shape.len()], 0f32).into_tensor(),
                )
                .expect("a bound");
            model
                .wire_node("relu", math::max(), &[e, zero])
                .expect("wired")[0]
        } else {
            e
        };
        let p = conv1x1(&mut model, "project", e, &wide, channels, true);
        let sum = model
            .wire_node("residual", math::add(), &[p, x])
            .expect("wired")[0];
        let out = test_graphs::clamps(&mut model, sum, after, shape.len());
        let outputs = if keep_x { vec![out, x] } else { vec![out] };
        model.select_output_outlets(&outputs).expect("outputs");
        model.into_decluttered().expect("decluttered")
    }

    /// `model` with our ops, folded as `replace_with_ours` folds them: how
    /// many residuals were folded, and the plan's outputs on `x`.
    fn ours_with_residuals(mut model: TypedModel, x: &Tensor) -> (usize, TVec<TValue>) {
        assert_eq!(replace_pointwise(&mut model).expect("patched"), 2);
        fuse_clamps::<Pointwise>(&mut model).expect("clamps");
        let folded = fuse_residuals(&mut model).expect("residuals");
        // Nothing folds into an op after its residual.
        assert_eq!(fuse_clamps::<Pointwise>(&mut model).expect("clamps"), 0);
        (folded, plan_run(model, x))
    }

    #[test]
    fn a_residual_add_is_folded_in_with_tracts_values() {
        // Pixels: whole vectors, a part vector after blocks of three (49,
        // 196: the embedder's 7×7 and 14×14), a single vector, and counts
        // whose last block is two of two vectors (25, 100 at 16 and 8 lanes).
        let shapes: [&[usize]; 7] = [
            &[8, 8, 8],
            &[16, 7, 7],
            &[8, 14, 14],
            &[1, 8, 4, 4],
            &[8, 5, 5],
            &[8, 10, 10],
            &[1, 16, 9, 9],
        ];
        for shape in shapes {
            let x = tensor(shape, 0x9e37_79b9);
            for relu in [false, true] {
                let theirs = plan_run(residual_block(shape, relu, false, &[]), &x);
                let (folded, ours) =
                    ours_with_residuals(residual_block(shape, relu, false, &[]), &x);
                assert_eq!(folded, 1, "{shape:?}");
                assert_eq!(ours[0], theirs[0], "{shape:?} relu {relu}");
            }
        }
    }

    #[test]
    fn a_residual_the_plan_still_holds_is_left_as_it_was() {
        // The sum goes into the residual's buffer only when the op holds
        // its one reference: here x is also an output of the model.
        for shape in [&[16usize, 7, 7][..], &[8, 8, 8]] {
            let x = tensor(shape, 0x1b87_3593);
            let theirs = plan_run(residual_block(shape, true, true, &[]), &x);
            let (folded, ours) = ours_with_residuals(residual_block(shape, true, true, &[]), &x);
            assert_eq!(folded, 1);
            assert_eq!(
                ours[1].clone().into_tensor(),
                x,
                "{shape:?}: x was overwritten"
            );
            assert_eq!(ours[0], theirs[0], "{shape:?}");
        }
    }

    #[test]
    fn a_clamp_after_the_residual_stays_tracts() {
        let shape = [16, 7, 7];
        let x = tensor(&shape, 0x7f4a_7c15);
        let after = [("max", 0.0), ("min", 0.5)];
        let theirs = plan_run(residual_block(&shape, true, false, &after), &x);
        let (folded, ours) = ours_with_residuals(residual_block(&shape, true, false, &after), &x);
        assert_eq!(folded, 1);
        assert_eq!(ours[0], theirs[0]);
    }

    #[test]
    fn the_op_gives_tracts_values_on_the_models_layers_and_odd_shapes() {
        // (input, outputs): layers of both models at the sizes latchd runs
        // them (whole blocks of pixels, a part vector, under one block),
        // and odd sizes.
        let cases: [(&[usize], usize); 9] = [
            (&[64, 56, 56], 128),
            (&[128, 28, 28], 64),
            (&[256, 14, 14], 128),
            (&[128, 7, 7], 512),
            (&[1, 16, 160, 160], 16),
            (&[1, 64, 20, 20], 64),
            (&[64, 10, 10], 64),
            (&[3, 4, 4], 8),
            (&[1, 5, 3, 7], 24),
        ];
        for (shape, outputs) in cases {
            let x = tensor(shape, 0x9e37_79b9);
            let mut ours = model(shape, outputs, true, &[]);
            assert_eq!(
                replace_pointwise(&mut ours).expect("patched"),
                1,
                "{shape:?}"
            );
            let (our_shape, our_values) = run(ours, &x);
            let (their_shape, their_values) = run(model(shape, outputs, true, &[]), &x);
            assert_eq!(our_shape, their_shape, "{shape:?}");
            let differ = our_values
                .iter()
                .zip(&their_values)
                .position(|(a, b)| a != b);
            assert_eq!(differ, None, "{shape:?}: first difference");
        }
    }

    #[test]
    fn the_bias_and_the_clamps_after_it_are_folded_in() {
        let shape = [32, 9, 9];
        let x = tensor(&shape, 0x7f4a_7c15);
        for (bias, clamps, folded) in [
            (true, &[("max", 0.0), ("min", 0.5)][..], 2),
            (true, &[("max", 0.0)][..], 1),
            (false, &[("max", 0.0)][..], 1),
            (true, &[("min", 0.5), ("max", 0.0)][..], 1),
        ] {
            let mut ours = model(&shape, 16, bias, clamps);
            assert_eq!(replace_pointwise(&mut ours).expect("replaced"), 1);
            assert_eq!(
                fuse_clamps::<Pointwise>(&mut ours).expect("fused"),
                folded,
                "{clamps:?}"
            );
            // Nothing of tract's left between the input and the output
            // but what does not fold.
            let left = ours.nodes().len();
            let (_, our_values) = run(ours, &x);
            let (_, their_values) = run(model(&shape, 16, bias, clamps), &x);
            assert_eq!(
                our_values, their_values,
                "bias {bias}, {clamps:?} ({left} nodes)"
            );
        }
    }

    #[test]
    fn only_layers_of_whole_tiles_and_vectors_are_replaced() {
        // Four output channels (not a tile); three by three pixels (under
        // a vector).
        for (shape, outputs) in [(&[16usize, 8, 8][..], 4), (&[16, 3, 3][..], 16)] {
            let mut m = model(shape, outputs, true, &[]);
            assert_eq!(replace_pointwise(&mut m).expect("patched"), 0, "{shape:?}");
        }
    }

    #[test]
    fn every_vector_unit_gives_the_same_values() {
        // Each path pulp has here, forced: whole blocks of three vectors, a
        // part vector, blocks of two, and a block of one; into a fresh
        // output, onto a residual, and over the input.
        for pixels in [96, 100, 20, 16, 25] {
            for mode in ["fresh", "residual", "in place"] {
                let g = Geometry {
                    inputs: 16,
                    outputs: 16,
                    pixels,
                };
                let input = values(g.inputs * g.pixels, 11);
                let weights = values(g.outputs * g.inputs, 12);
                let bias = values(g.outputs, 13);
                let residual = values(g.outputs * g.pixels, 14);
                let run_on = |unit: &dyn Fn(Layer<'_>)| {
                    let kernel = Kernel {
                        g,
                        weights: &weights,
                        bias: Some(&bias),
                        low: Some(-0.5),
                        high: Some(1.5),
                    };
                    let mut out = if mode == "residual" {
                        residual.clone()
                    } else {
                        vec![0f32; g.outputs * g.pixels]
                    };
                    let mut both = input.clone();
                    let mut block = vec![0f32; g.outputs * 3 * MAX_LANES];
                    let data = if mode == "in place" {
                        Data::InPlace {
                            both: &mut both,
                            block: &mut block,
                        }
                    } else {
                        Data::Apart {
                            input: &input,
                            output: &mut out,
                        }
                    };
                    unit(Layer {
                        kernel,
                        data,
                        accumulate: mode == "residual",
                    });
                    if mode == "in place" {
                        both
                    } else {
                        out
                    }
                };
                // The vector units fuse their multiply-adds: equal values.
                // The scalar fallback rounds twice: within rounding of them.
                let best = run_on(&|p| Arch::new().dispatch(p));
                let scalar = run_on(&|p| Simd::vectorize(pulp::Scalar::new(), p));
                let worst = best
                    .iter()
                    .zip(&scalar)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(worst <= 1e-5, "{g:?} {mode}: scalar off by {worst}");
                #[cfg(target_arch = "x86_64")]
                if let Some(v3) = pulp::x86::V3::try_new() {
                    let v3 = run_on(&|p| Simd::vectorize(v3, p));
                    let differ = v3.iter().zip(&best).position(|(a, b)| a != b);
                    assert_eq!(differ, None, "{g:?} {mode}");
                }
                if mode == "fresh" {
                    continue;
                }
                // Against the fresh output (plus the residual): the same
                // values.
                let fresh = {
                    let mut out = vec![0f32; g.outputs * g.pixels];
                    let kernel = Kernel {
                        g,
                        weights: &weights,
                        bias: Some(&bias),
                        low: Some(-0.5),
                        high: Some(1.5),
                    };
                    Arch::new().dispatch(Layer {
                        kernel,
                        data: Data::Apart {
                            input: &input,
                            output: &mut out,
                        },
                        accumulate: false,
                    });
                    if mode == "residual" {
                        out.iter_mut().zip(&residual).for_each(|(o, r)| *o += r);
                    }
                    out
                };
                assert_eq!(best, fresh, "{g:?} {mode}");
            }
        }
    }

    #[test]
    fn an_input_the_plan_still_holds_is_left_as_it_was() {
        // A layer of as many outputs as inputs writes over its input only
        // when it holds the input's one reference: here the input is also
        // the model's second output.
        for shape in [&[16usize, 7, 7][..], &[1, 16, 10, 10], &[8, 8, 8]] {
            let x = tensor(shape, 0x1b87_3593);
            let both = |replace: bool| {
                let mut m = model(shape, shape[shape.len() - 3], true, &[]);
                let out = m.output_outlets().expect("an output")[0];
                m.select_output_outlets(&[out, m.input_outlets().expect("an input")[0]])
                    .expect("two outputs");
                if replace {
                    assert_eq!(replace_pointwise(&mut m).expect("patched"), 1);
                }
                plan_run(m, &x)
            };
            let ours = both(true);
            assert_eq!(
                ours[1].clone().into_tensor(),
                x,
                "{shape:?}: the input was overwritten"
            );
            assert_eq!(ours[0], both(false)[0], "{shape:?}: tract's values");
        }
    }
}
