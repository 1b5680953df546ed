//! Reverse-mode automatic differentiation.
//!
//! The tape is written as ops run: every op whose inputs need gradients
//! attaches a [`GradFn`] to its output, holding the inputs and a closure, the
//! op's backward rule, written in the op's own `mod.rs` right under its
//! forward code. Reading the entries back from the loss, in reverse order of
//! recording, is the chain rule: each entry turns the gradient of its output
//! into gradients of its inputs.
//!
//! Leaves are parameters ([`Param`]): their entry, instead of a closure,
//! adds the incoming gradient to the parameter's `.grad()`.
//!
//! A gradient may be handed back as a scalar (shape `[]`) standing for that
//! value at every element: `sum` and `mean` do, since their input's gradient
//! is one value everywhere. Ops recorded with [`record_taking_scalar_dy`]
//! (`mul`) receive it as it is: `dy · b` is then one pass over `b`, with no
//! tensor of ones written and read back. Every other op, a parameter, and
//! the sum of two gradients get it expanded to the full shape first.
//!
//! Inside a [`no_grad`] scope nothing is recorded, so a frozen backbone keeps
//! no activations: each one is freed as soon as the next layer has used it.

use crate::error::{Error, Result};
use crate::tensor::{mixed_devices, CpuStorage, Storage, Tensor};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// An op's backward rule: given the gradient of the output (same shape as the
/// output, or a scalar standing for every element when the op was recorded
/// with [`record_taking_scalar_dy`]) and which inputs need a gradient,
/// returns one gradient per input (`None` where not needed), each with that
/// input's shape or a scalar (see the module docs).
pub type BackwardFn = Box<dyn Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// One entry of the tape.
pub enum GradFn {
    /// The output of an op.
    Op {
        /// The op's name, for error messages.
        name: &'static str,
        /// The op's inputs, in the order its backward returns their gradients.
        inputs: Vec<Tensor>,
        /// The op's backward rule.
        backward: BackwardFn,
        /// Whether `backward` takes a scalar `dy` standing for every element
        /// of the output (otherwise the tape expands it first).
        takes_scalar_dy: bool,
    },
    /// A trainable parameter: the gradient is added to its `.grad()`.
    Param(Arc<ParamInner>),
}

impl GradFn {
    /// The op's name ("param" for a leaf).
    pub fn name(&self) -> &'static str {
        match self {
            GradFn::Op { name, .. } => name,
            GradFn::Param(_) => "param",
        }
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record themselves on the tape on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous recording state when dropped.
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Stops recording until the returned guard is dropped:
/// `let _guard = no_grad(); let features = backbone.forward(&x)?;`
pub fn no_grad() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { previous }
}

/// Runs `f` with recording off.
pub fn with_no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = no_grad();
    f()
}

/// Builds an op's output tensor, recording it on the tape when recording is
/// on and some input requires a gradient. Every op ends with this call.
pub fn record(
    name: &'static str,
    storage: Storage,
    shape: Vec<usize>,
    inputs: &[&Tensor],
    backward: BackwardFn,
) -> Tensor {
    record_entry(name, Arc::new(storage), shape, inputs, backward, false)
}

/// [`record`] for an op whose backward also takes a scalar `dy`, standing
/// for that value at every element of the output (see the module docs).
pub(crate) fn record_taking_scalar_dy(
    name: &'static str,
    storage: Storage,
    shape: Vec<usize>,
    inputs: &[&Tensor],
    backward: BackwardFn,
) -> Tensor {
    record_entry(name, Arc::new(storage), shape, inputs, backward, true)
}

/// [`record`] for an output that shares its input's storage (reshape,
/// flatten): no data is copied, only the shape and the tape entry are new.
pub(crate) fn record_shared(
    name: &'static str,
    storage: Arc<Storage>,
    shape: Vec<usize>,
    inputs: &[&Tensor],
    backward: BackwardFn,
) -> Tensor {
    record_entry(name, storage, shape, inputs, backward, false)
}

fn record_entry(
    name: &'static str,
    storage: Arc<Storage>,
    shape: Vec<usize>,
    inputs: &[&Tensor],
    backward: BackwardFn,
    takes_scalar_dy: bool,
) -> Tensor {
    let grad_fn = if is_grad_enabled() && inputs.iter().any(|t| t.requires_grad()) {
        let inputs = inputs.iter().map(|&t| t.clone()).collect();
        Some(Arc::new(GradFn::Op {
            name,
            inputs,
            backward,
            takes_scalar_dy,
        }))
    } else {
        None // the closure and everything it saved are dropped here
    };
    Tensor::new_unchecked(storage, shape, grad_fn)
}

/// `g` with `shape`: `g` itself if it has it, else `g`'s single value (a
/// scalar gradient standing for every element) at every element.
fn expand(g: Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g);
    }
    Tensor::full_on(g.item()?, shape, g.dtype(), g.device())
}

/// Adds two tensors of equal shape outside of autograd (gradient accumulation).
pub(crate) fn accumulate(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(Error::shape(
            "backward",
            format!(
                "gradient of shape {:?} cannot be added to {:?}",
                b.shape(),
                a.shape()
            ),
        ));
    }
    let out = match (a.storage(), b.storage()) {
        (Storage::Cpu(CpuStorage::F32(x)), Storage::Cpu(CpuStorage::F32(y))) => {
            CpuStorage::F32(x.iter().zip(y).map(|(p, q)| p + q).collect())
        }
        (Storage::Cpu(CpuStorage::F64(x)), Storage::Cpu(CpuStorage::F64(y))) => {
            CpuStorage::F64(x.iter().zip(y).map(|(p, q)| p + q).collect())
        }
        // On a GPU: the same shapes, so `add` takes its plain elementwise path.
        (Storage::Cuda(_), Storage::Cuda(_)) => return crate::ops::add(a, b).map(|t| t.detach()),
        (x, y) if x.device() != y.device() => {
            return Err(mixed_devices("backward", x.device(), y.device()))
        }
        _ => {
            return Err(Error::dtype(
                "backward",
                format!("gradients of dtypes {} and {}", a.dtype(), b.dtype()),
            ))
        }
    };
    Tensor::from_storage(Storage::Cpu(out), a.shape())
}

/// The tensors `loss` depends on through the tape, `loss` last: by
/// depth-first search, every tensor after its inputs.
fn topological_order(loss: &Tensor) -> Vec<Tensor> {
    let mut order: Vec<Tensor> = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut stack: Vec<(Tensor, bool)> = vec![(loss.clone(), false)];
    while let Some((t, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(GradFn::Op { inputs, .. }) = t.grad_fn().map(|g| g.as_ref()) {
            for input in inputs.iter().filter(|i| i.requires_grad()) {
                if !seen.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// Runs the tape backwards from `loss` (see the module docs).
pub(crate) fn backward(loss: &Tensor) -> Result<()> {
    if loss.numel() != 1 {
        return Err(Error::shape(
            "backward",
            format!(
                "loss has shape {:?}; backward() starts from a scalar",
                loss.shape()
            ),
        ));
    }
    if !loss.requires_grad() {
        return Err(Error::invalid(
            "backward",
            "the loss does not depend on any trainable parameter (all frozen, or computed under no_grad)",
        ));
    }
    let _guard = no_grad();

    let order = topological_order(loss);

    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    let seed = Tensor::full_on(1.0, loss.shape(), loss.dtype(), loss.device())?;
    grads.insert(loss.id(), seed);
    for t in order.iter().rev() {
        let Some(dy) = grads.remove(&t.id()) else {
            continue;
        };
        match t
            .grad_fn()
            .expect("only tensors that require grad are on the tape")
            .as_ref()
        {
            GradFn::Param(p) => p.accumulate_grad(&expand(dy, t.shape())?)?,
            GradFn::Op {
                name,
                inputs,
                backward,
                takes_scalar_dy,
            } => {
                let dy = if *takes_scalar_dy {
                    dy
                } else {
                    expand(dy, t.shape())?
                };
                let needs: Vec<bool> = inputs.iter().map(|i| i.requires_grad()).collect();
                let dxs = backward(&dy, &needs)?;
                if dxs.len() != inputs.len() {
                    return Err(Error::invalid(
                        name,
                        format!(
                            "backward returned {} gradients for {} inputs",
                            dxs.len(),
                            inputs.len()
                        ),
                    ));
                }
                for ((input, dx), need) in inputs.iter().zip(dxs).zip(needs) {
                    let Some(dx) = dx.filter(|_| need) else {
                        continue;
                    };
                    if dx.shape() != input.shape() && !dx.shape().is_empty() {
                        return Err(Error::shape(
                            name,
                            format!(
                                "backward gave a gradient of shape {:?} for an input of shape {:?}",
                                dx.shape(),
                                input.shape()
                            ),
                        ));
                    }
                    let total = match grads.remove(&input.id()) {
                        Some(g) => {
                            accumulate(&expand(g, input.shape())?, &expand(dx, input.shape())?)?
                        }
                        None => dx,
                    };
                    grads.insert(input.id(), total);
                }
            }
        }
    }
    Ok(())
}

/// Shared state of a parameter.
pub struct ParamInner {
    name: String,
    value: RwLock<Tensor>,
    grad: Mutex<Option<Tensor>>,
    trainable: AtomicBool,
}

impl ParamInner {
    fn accumulate_grad(&self, dy: &Tensor) -> Result<()> {
        let mut grad = self.grad.lock().unwrap_or_else(|e| e.into_inner());
        let total = match grad.take() {
            Some(g) => accumulate(&g, dy)?,
            None => dy.detach(),
        };
        *grad = Some(total);
        Ok(())
    }
}

/// A named, trainable tensor: a weight of a layer. Cloning shares it.
///
/// `param.tensor()` is what a layer's forward uses. While the parameter is
/// trainable and recording is on, that tensor is a leaf on the tape and
/// `loss.backward()` adds into `param.grad()`; when frozen it is a plain
/// constant and nothing upstream of it is recorded.
#[derive(Clone)]
pub struct Param(Arc<ParamInner>);

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Param({}, {:?}, trainable={})",
            self.name(),
            self.shape(),
            self.is_trainable()
        )
    }
}

impl Param {
    /// A trainable parameter named like its Keras weight (`block1_conv1/kernel`).
    pub fn new(name: impl Into<String>, value: Tensor) -> Param {
        Param(Arc::new(ParamInner {
            name: name.into(),
            value: RwLock::new(value.detach()),
            grad: Mutex::new(None),
            trainable: AtomicBool::new(true),
        }))
    }

    /// The Keras-style weight name, e.g. `block1_conv1/kernel`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The current value, without autograd history.
    pub fn value(&self) -> Tensor {
        self.0
            .value
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The shape of the current value.
    pub fn shape(&self) -> Vec<usize> {
        self.value().shape().to_vec()
    }

    /// The value as used in a forward pass (a tape leaf when trainable).
    pub fn tensor(&self) -> Tensor {
        let value = self.value();
        if self.is_trainable() && is_grad_enabled() {
            Tensor::new_unchecked(
                value.storage_arc().clone(),
                value.shape().to_vec(),
                Some(Arc::new(GradFn::Param(self.0.clone()))),
            )
        } else {
            value
        }
    }

    /// Replaces the value (an optimizer step, or loading weights). The shape
    /// and dtype must stay the same.
    pub fn set_value(&self, value: Tensor) -> Result<()> {
        let mut slot = self.0.value.write().unwrap_or_else(|e| e.into_inner());
        if slot.shape() != value.shape() || slot.dtype() != value.dtype() {
            return Err(Error::shape(
                "Param::set_value",
                format!(
                    "{}: new value is {:?} {}, parameter is {:?} {}",
                    self.name(),
                    value.shape(),
                    value.dtype(),
                    slot.shape(),
                    slot.dtype()
                ),
            ));
        }
        *slot = value.detach();
        Ok(())
    }

    /// The accumulated gradient, if any backward pass reached this parameter.
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether backward passes reach this parameter.
    pub fn is_trainable(&self) -> bool {
        self.0.trainable.load(Ordering::Relaxed)
    }

    /// Freezes (false) or unfreezes (true) the parameter.
    pub fn set_trainable(&self, trainable: bool) {
        self.0.trainable.store(trainable, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use crate::{ops, Param, Tensor};

    /// The scalar gradients of `sum` and `mean` reach a parameter, another
    /// op (relu), a product (which takes them whole) and each other
    /// (accumulated), each as the full gradient would: x.grad = 1 + 1/N +
    /// (x > 0) + b everywhere, to the bit.
    #[test]
    fn scalar_gradients_stand_for_every_element() {
        let xv = vec![-1.5f32, 0.25, 2.0, -0.5, 3.0, 1.0];
        let bv = vec![0.5f32, -2.0, 1.5, 4.0, -0.25, 3.0];
        let x = Param::new("x", Tensor::from_vec(xv.clone(), &[2, 3]).unwrap());
        let b = Tensor::from_vec(bv.clone(), &[2, 3]).unwrap();
        let t = x.tensor();
        let terms = [
            ops::sum(&t),
            ops::mean(&t),
            ops::sum(&ops::relu(&t).unwrap()),
            ops::sum(&ops::mul(&t, &b).unwrap()),
        ];
        let mut loss = terms[0].as_ref().unwrap().clone();
        for term in &terms[1..] {
            loss = ops::add(&loss, term.as_ref().unwrap()).unwrap();
        }
        loss.backward().unwrap();
        let want: Vec<f32> = xv
            .iter()
            .zip(&bv)
            .map(|(&x, &b)| 1.0 + 1.0 / 6.0 + if x > 0.0 { 1.0 } else { 0.0 } + b)
            .collect();
        let grad = x.grad().unwrap();
        assert_eq!(grad.shape(), &[2, 3]);
        assert_eq!(grad.to_vec_f32(), want);
    }
}
