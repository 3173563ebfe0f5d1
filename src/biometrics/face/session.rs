//! One optimised plan with the scratch its runs reuse: the run state and
//! the input tensor. A frame then allocates neither: the caller writes the
//! pixels straight into last frame's input tensor and runs the same state.
//!
//! ```text
//!  Session { plan (fully typed, concrete input shape), scratch: Mutex<Option<Scratch>> }
//!  run(fill, read):  take scratch (or make one) ──► fill(input) ──► state.run ──► read(outputs)
//!                    └── put the scratch back (dropped instead on an error)
//! ```
//!
//! The scratch is taken out of the mutex for the run, so the lock is never
//! held during inference and a panic in a run cannot poison anything the
//! next run needs: a caller that finds no scratch (a concurrent run, or a
//! run that failed) makes a fresh one.
use std::sync::{Arc, Mutex, PoisonError};

use tract_onnx::prelude::*;

use super::FaceError;

type Plan = Arc<TypedRunnableModel>;

pub(super) struct Session {
    plan: Plan,
    shape: [usize; 4],
    scratch: Mutex<Option<Scratch>>,
}

struct Scratch {
    state: TypedSimpleState,
    /// Shared with the plan during a run only; exclusive again after it.
    input: Arc<Tensor>,
}

impl Scratch {
    fn new(plan: &Plan, shape: [usize; 4]) -> Result<Self, FaceError> {
        Ok(Scratch {
            state: plan.spawn().map_err(FaceError::inference)?,
            input: Arc::new(Tensor::zero::<f32>(&shape).map_err(FaceError::inference)?),
        })
    }
}

impl Session {
    /// `plan` must take one f32 input of `shape`.
    pub(super) fn new(plan: Plan, shape: [usize; 4]) -> Self {
        Session {
            plan,
            shape,
            scratch: Mutex::new(None),
        }
    }

    /// Runs the plan on the input `fill` writes (NCHW, every element: the
    /// buffer holds the previous frame), and hands the outputs to `read`.
    pub(super) fn run<R>(
        &self,
        fill: impl FnOnce(&mut [f32]),
        read: impl FnOnce(&[TValue]) -> Result<R, FaceError>,
    ) -> Result<R, FaceError> {
        let taken = self
            .scratch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut scratch = match taken {
            Some(s) => s,
            None => Scratch::new(&self.plan, self.shape)?,
        };
        if Arc::get_mut(&mut scratch.input).is_none() {
            // Still shared (the plan kept a reference): start a new buffer.
            scratch.input =
                Arc::new(Tensor::zero::<f32>(&self.shape).map_err(FaceError::inference)?);
        }
        {
            // The view borrows the tensor: it ends before the run shares it.
            let input = Arc::get_mut(&mut scratch.input)
                .unwrap_or_else(|| unreachable!("a fresh Arc is exclusive"));
            let mut view = input.try_as_plain_ram_mut().map_err(FaceError::inference)?;
            fill(view.as_slice_mut::<f32>().map_err(FaceError::inference)?);
        }
        let outputs = scratch
            .state
            .run(tvec!(TValue::from_const(scratch.input.clone())))
            .map_err(FaceError::inference)?;
        let result = read(&outputs);
        drop(outputs);
        *self.scratch.lock().unwrap_or_else(PoisonError::into_inner) = Some(scratch);
        result
    }
}
