//! Copies from a GPU to the host that leave the GPU busy.
//!
//! `Tensor::to_device(Device::Cpu)` waits for everything queued on the
//! device's stream, so a loop that queues a batch, copies its result back
//! and only then queues the next one leaves the GPU idle while the host
//! handles each result. [`HostStaging`] splits the copy in two:
//!
//! ```text
//! start(y_i)   queue the copy of y_i into page-locked host memory, record an event
//! ...          queue batch i+1 (the GPU works on it)
//! finish()     wait for that event only, then read the values
//! ```
//!
//! The copy must go to page-locked memory to be asynchronous (from pageable
//! memory the driver waits for it to complete), and that memory is allocated
//! once per size and reused: freeing it can wait for the whole device, so it
//! is only reallocated when the size changes (an epoch's last, smaller
//! batch). It is exactly the copy's size because cudarc copies as many
//! elements as the host side holds (a larger buffer read past the GPU
//! buffer's end: CUDA_ERROR_INVALID_VALUE, seen on an H100). Two stagings,
//! used in turn, keep one batch in flight (the trainer's feature extraction).

use super::cudarc::driver::{CudaEvent, PinnedHostSlice};
use super::CudaDevice;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::Arc;

/// Page-locked host memory on one GPU's side, and the copy queued into it.
pub struct HostStaging {
    device: Arc<CudaDevice>,
    /// The size of the last copy (at least one element).
    pinned: Option<PinnedHostSlice<f32>>,
    /// The event recorded after the last queued copy, its length and shape.
    pending: Option<(CudaEvent, usize, Vec<usize>)>,
}

impl HostStaging {
    /// An empty staging for copies from `device` (memory comes with the first copy).
    pub fn new(device: Arc<CudaDevice>) -> HostStaging {
        HostStaging {
            device,
            pinned: None,
            pending: None,
        }
    }

    /// Queues a copy of `t` (f32, on this staging's GPU) to the host and
    /// returns at once; work queued afterwards runs while it is pending.
    /// One copy at a time: [`HostStaging::finish`] the last one first.
    pub fn start(&mut self, t: &Tensor) -> Result<()> {
        const OP: &str = "HostStaging::start";
        if self.pending.is_some() {
            return Err(Error::invalid(
                OP,
                "a copy is still pending; call finish() before starting another",
            ));
        }
        let storage = t.cuda_storage(OP)?;
        let (from, to) = (storage.ordinal(), self.device.info().ordinal);
        if from != to {
            return Err(Error::invalid(
                OP,
                format!(
                    "tensor {:?} is on cuda:{from}, this staging copies from cuda:{to}",
                    t.shape()
                ),
            ));
        }
        let n = storage.len();
        let error = |what: &'static str| {
            move |e| Error::Cuda(format!("{OP}: {what} for {n} floats on cuda:{to}: {e:?}"))
        };
        if self.pinned.as_ref().is_none_or(|p| p.len() != n.max(1)) {
            // Free the old memory first.
            self.pinned = None;
            // SAFETY: the memory is only read after a copy has written it (finish).
            // Flags 0: plain page-locked memory, fast for the host to read
            // (cudarc's alloc_pinned asks for write-combined memory, which is not).
            let pinned = unsafe {
                self.device
                    .context()
                    .alloc_pinned_with_flags::<f32>(n.max(1), 0)
            }
            .map_err(error("allocating page-locked host memory"))?;
            self.pinned = Some(pinned);
        }
        let stream = self.device.stream();
        if n > 0 {
            let pinned = self.pinned.as_mut().expect("allocated above");
            stream
                .memcpy_dtoh(storage.slice(), pinned)
                .map_err(error("queueing the copy to the host"))?;
        }
        // Recorded here, after the copy: finish() waits for it and for nothing queued later.
        let done = stream
            .record_event(None)
            .map_err(error("recording the copy's event"))?;
        self.pending = Some((done, n, t.shape().to_vec()));
        Ok(())
    }

    /// Waits for the copy [`HostStaging::start`] queued and returns the values
    /// as a host tensor of the same shape.
    pub fn finish(&mut self) -> Result<Tensor> {
        const OP: &str = "HostStaging::finish";
        let (done, n, shape) = self
            .pending
            .take()
            .ok_or_else(|| Error::invalid(OP, "no copy was started; call start() first"))?;
        let error = |what: &'static str| move |e| Error::Cuda(format!("{OP}: {what}: {e:?}"));
        done.synchronize().map_err(error("waiting for the copy"))?;
        let pinned = self.pinned.as_ref().expect("allocated by start");
        // The slice's own event is never recorded (one stream, no event
        // tracking), so this does not wait again.
        let values = pinned.as_slice().map_err(error("reading the copy"))?[..n].to_vec();
        Tensor::from_vec(values, &shape)
    }
}
