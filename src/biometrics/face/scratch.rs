//! The scratch our convolutions keep from one run of a plan to the next:
//! the zero-bordered planes the first and the depthwise convolutions read
//! from. Each run overwrites the same interior and the border stays zero,
//! so a plane is allocated and zeroed once per plan state, not per frame
//! (the first convolution's is 1.2 MB). It lives in the op's `OpState`
//! ([`ScratchState`]), one per plan state (`session.rs`): nothing is shared
//! between threads.
//!
//! Measured and not kept (s42): the fresh output tensors our ops zero-fill
//! (the crate forbids `unsafe`, so it cannot take uninitialised memory as
//! tract does) were 11 % of the face pipeline's time. Keeping each op's
//! output for the next frame saved 7 % of a frame and held 26 MB more; a
//! capped pool of the activations our ops were done with saved 3 % and
//! held 7 MB more. A lock's memory is worth more than either.

use std::marker::PhantomData;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// One op's scratch in one plan state.
#[derive(Debug, Clone, Default)]
pub(super) struct Scratch {
    planes: Vec<f32>,
}

impl Scratch {
    /// `len` floats of scratch, zeroed when first made: what a run writes
    /// into it, the next overwrites.
    pub(super) fn planes(&mut self, len: usize) -> &mut [f32] {
        if self.planes.len() != len {
            self.planes = vec![0.0; len];
        }
        &mut self.planes
    }
}

/// An op of ours that runs with [`Scratch`].
pub(super) trait UsesScratch: Op + Clone + 'static {
    fn eval_with(&self, scratch: &mut Scratch, inputs: TVec<TValue>) -> TractResult<TVec<TValue>>;
}

/// The `OpState` that carries an op's [`Scratch`] between runs.
#[derive(Debug)]
pub(super) struct ScratchState<T> {
    scratch: Scratch,
    op: PhantomData<fn() -> T>,
}

impl<T> Clone for ScratchState<T> {
    fn clone(&self) -> Self {
        ScratchState {
            scratch: self.scratch.clone(),
            op: PhantomData,
        }
    }
}

impl<T> ScratchState<T> {
    pub(super) fn new() -> Self {
        ScratchState {
            scratch: Scratch::default(),
            op: PhantomData,
        }
    }
}

impl<T: UsesScratch> OpState for ScratchState<T> {
    fn eval(
        &mut self,
        _ctx: &EvalContext<'_>,
        op: &dyn Op,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        let op = op
            .downcast_ref::<T>()
            .with_context(|| format!("{} state given another op", op.name()))?;
        op.eval_with(&mut self.scratch, inputs)
    }

    fn reset_lanes(&mut self, _lanes: &[LaneId]) -> TractResult<()> {
        // Nothing in the scratch depends on a stream: every run overwrites
        // what it reads back.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_keeps_its_writes_and_is_remade_zeroed_for_another_size() {
        let mut b = Scratch::default();
        b.planes(3)[1] = 5.0;
        assert_eq!(b.planes(3), &[0.0, 5.0, 0.0]);
        assert_eq!(b.planes(2), &[0.0, 0.0]);
    }
}
