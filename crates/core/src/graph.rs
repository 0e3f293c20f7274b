//! The network IR: the small set of layers that CIFAR ResNets (and the
//! importer) need, with shapes checked once when the network is built.

use crate::bail;
use crate::error::Result;

/// Shape of one image's activation: channels × height × width. Vectors
/// (after Flatten / Linear) are `c × 1 × 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    /// Values of one image of this shape (a shape is never "empty": no is_empty).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// `len`, or None when it overflows: `Network::new` checks shapes with
    /// this (dimensions come from the caller, and a wrapped product could
    /// pass the size limit).
    fn checked_len(&self) -> Option<usize> {
        self.c.checked_mul(self.h)?.checked_mul(self.w)
    }
}

#[derive(Debug, Clone)]
pub struct Conv {
    /// `[out, in, kh, kw]`, row-major as in ONNX.
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub out_channels: usize,
    pub in_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// top, left, bottom, right.
    pub pads: [usize; 4],
}

#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub scale: Vec<f32>,
    pub bias: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

/// Spatial strided slice (H and W), as the option-A shortcut uses.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub start: [usize; 2],
    pub end: [usize; 2],
    pub step: [usize; 2],
}

/// A MaxPool / AveragePool window, as ONNX describes it (dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// top, left, bottom, right; each below the kernel, so that every
    /// window covers at least one input pixel.
    pub pads: [usize; 4],
    /// Output size rounded up, dropping a last window that would start in
    /// the bottom/right padding (onnxruntime and PyTorch agree on this).
    pub ceil_mode: bool,
    /// AvgPool only: divide by the window clipped to the padded input
    /// rather than by the input pixels it covers.
    pub count_include_pad: bool,
}

/// Elementwise arithmetic (ONNX Add, Sub, Mul, Div).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// A constant operand of a `Binary`, broadcast as a tensor of `shape`.
#[derive(Debug, Clone)]
pub struct Constant {
    pub values: Vec<f32>,
    pub shape: Shape,
    /// The constant is the left operand (`c − x`, `c / x`).
    pub first: bool,
}

/// `a ∘ b` elementwise with numpy broadcasting over `c × h × w`: along each
/// axis the operands' sizes are equal or one of them is 1. The operands are
/// two values (the node's inputs), or one value and a constant. Constants
/// are not trained: an exported graph stores learned parameters and fixed
/// buffers (an input normalisation, say) alike as initializers, and
/// training a buffer as a parameter would change what the model means.
#[derive(Debug, Clone)]
pub struct Binary {
    pub arith: Arith,
    pub constant: Option<Constant>,
}

/// The shape of `s` with its axes permuted as `Op::Transpose` does, or
/// None when `perm` is not a permutation of the three axes.
pub fn transposed(s: Shape, perm: [usize; 3]) -> Option<Shape> {
    let mut seen = [false; 3];
    for &a in &perm {
        if a > 2 || std::mem::replace(&mut seen[a], true) {
            return None;
        }
    }
    let dims = [s.c, s.h, s.w];
    Some(Shape { c: dims[perm[0]], h: dims[perm[1]], w: dims[perm[2]] })
}

/// The permutation that undoes `perm`: a Transpose's gradient is the
/// Transpose of the output gradient by it.
pub fn inverse_perm(perm: [usize; 3]) -> [usize; 3] {
    let mut inv = [0; 3];
    for (k, &a) in perm.iter().enumerate() {
        inv[a] = k;
    }
    inv
}

/// Broadcast shape of two operands, or None when an axis differs and neither is 1.
pub fn broadcast(a: Shape, b: Shape) -> Option<Shape> {
    let axis = |x: usize, y: usize| (x == y || x == 1 || y == 1).then_some(x.max(y));
    Some(Shape { c: axis(a.c, b.c)?, h: axis(a.h, b.h)?, w: axis(a.w, b.w)? })
}

/// Elementwise activations besides ReLU and the clamp (Hardtanh), as ONNX
/// defines them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `1 / (1 + e^−x)`, with pmath's `exp` so that the JS reference agrees.
    Sigmoid,
    /// `clamp(alpha·x + beta, 0, 1)`.
    HardSigmoid { alpha: f32, beta: f32 },
    /// `x · HardSigmoid(x)` with alpha 1/6, beta 1/2.
    HardSwish,
    /// `x ≥ 0 ? x : alpha·x`.
    LeakyRelu { alpha: f32 },
}

impl Activation {
    /// Digital operations per value, for the cost model: a sigmoid unit
    /// looks e^−x up (one op) then adds and divides; HardSigmoid is a
    /// multiply-add and a clamp, HardSwish that and a multiply, LeakyRelu a
    /// sign test selecting a multiply.
    pub fn digital_ops(&self) -> u64 {
        match self {
            Activation::Sigmoid | Activation::HardSwish => 3,
            Activation::HardSigmoid { .. } => 2,
            Activation::LeakyRelu { .. } => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`, row-major.
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub out_features: usize,
    pub in_features: usize,
}

#[derive(Debug, Clone)]
pub enum Op {
    Conv(Conv),
    BatchNorm(BatchNorm),
    Relu,
    /// Clamp to [min, max] (ONNX Clip; hardtanh when ±1).
    Hardtanh {
        min: f32,
        max: f32,
    },
    Binary(Binary),
    Activation(Activation),
    Slice(Slice),
    /// Zero channels added before and after (the option-A shortcut's Pad).
    PadChannels {
        before: usize,
        after: usize,
    },
    /// Channels `start..end` of the input (ONNX Slice on axis 1); the
    /// importer splits a grouped convolution into one per group with it.
    SliceChannels {
        start: usize,
        end: usize,
    },
    /// The axes of `c × h × w` permuted (ONNX Transpose with the batch
    /// first, NCHW → NHWC say): output axis `k` is input axis `perm[k]`.
    Transpose {
        perm: [usize; 3],
    },
    MaxPool(Pool),
    AvgPool(Pool),
    GlobalAvgPool,
    GlobalMaxPool,
    /// The inputs' channels one after the other (ONNX Concat on axis 1):
    /// each image's values are the inputs' values in order.
    Concat,
    Flatten,
    Linear(Linear),
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::BatchNorm(_) => "BatchNorm",
            Op::Relu => "Relu",
            Op::Hardtanh { .. } => "Hardtanh",
            Op::Binary(b) => match b.arith {
                Arith::Add => "Add",
                Arith::Sub => "Sub",
                Arith::Mul => "Mul",
                Arith::Div => "Div",
            },
            Op::Activation(a) => match a {
                Activation::Sigmoid => "Sigmoid",
                Activation::HardSigmoid { .. } => "HardSigmoid",
                Activation::HardSwish => "HardSwish",
                Activation::LeakyRelu { .. } => "LeakyRelu",
            },
            Op::Slice(_) => "Slice",
            Op::PadChannels { .. } => "PadChannels",
            Op::SliceChannels { .. } => "SliceChannels",
            Op::Transpose { .. } => "Transpose",
            Op::MaxPool(_) => "MaxPool",
            Op::AvgPool(_) => "AvgPool",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::Concat => "Concat",
            Op::Flatten => "Flatten",
            Op::Linear(_) => "Linear",
        }
    }

    /// How many inputs the op reads; None: any number from 1 (Concat).
    fn arity(&self) -> Option<usize> {
        match self {
            Op::Binary(b) if b.constant.is_none() => Some(2),
            Op::Concat => None,
            _ => Some(1),
        }
    }
}

/// A node reads values by index: value 0 is the network input, value `i + 1`
/// is the output of node `i`. Nodes are in topological order.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub input: Shape,
    pub nodes: Vec<Node>,
    /// Value index of the network output (a vector of class scores).
    pub output: usize,
    /// Shape of every value, index as in `Node::inputs`.
    pub shapes: Vec<Shape>,
    /// How every Conv node reads its input (empty for the others), made
    /// once: the per-image convolutions and unfolds read it.
    pub geometry: Vec<crate::layers::Geometry>,
    /// Per node: a Conv, a BatchNorm or an elementwise Binary whose output
    /// only the ReLU node right after it reads (and which is not the network
    /// output). Inference computes the two in one pass into the ReLU's value
    /// (engine.rs; a Conv in its bias pass) and leaves the
    /// first one's value unwritten.
    pub relu_after: Vec<bool>,
}

fn conv_out(size: usize, pad_a: usize, pad_b: usize, k: usize, stride: usize) -> Option<usize> {
    let padded = size.checked_add(pad_a)?.checked_add(pad_b)?;
    if k == 0 || stride == 0 || padded < k {
        return None;
    }
    Some((padded - k) / stride + 1)
}

/// Pooled size along one axis, or None when the window does not fit or a
/// pad reaches a whole kernel (a window of padding only has no value).
pub fn pool_out(size: usize, pad_a: usize, pad_b: usize, k: usize, stride: usize, ceil: bool) -> Option<usize> {
    let padded = size.checked_add(pad_a)?.checked_add(pad_b)?;
    if k == 0 || stride == 0 || padded < k || pad_a >= k || pad_b >= k {
        return None;
    }
    let span = padded - k;
    let out = if ceil { span.div_ceil(stride) } else { span / stride } + 1;
    // With ceil_mode the last window may start past the input, in the padding.
    Some(if ceil && (out - 1) * stride >= size + pad_a { out - 1 } else { out })
}

/// Upper bound on elements of any one activation or weight tensor: refuses
/// absurd declared sizes before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// Upper bound on the elements of all activations together (an inference
/// workspace, engine.rs, per thread) and of one layer's whole unfold (what
/// training and crossbar layers allocate per image).
pub const MAX_WORKSPACE: usize = 1 << 28;

fn within(n: Option<usize>, max: usize) -> Option<usize> {
    n.filter(|&n| n <= max)
}

impl Network {
    /// Checks every node's inputs, parameters and shapes; errors name the node.
    // `!(x > 0)` on floats is deliberate: it refuses NaN too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn new(input: Shape, nodes: Vec<Node>, output: usize) -> Result<Network> {
        if within(input.checked_len(), MAX_ELEMENTS).filter(|&n| n > 0).is_none() {
            bail!("network input shape {}x{}x{} is empty or too large", input.c, input.h, input.w);
        }
        let mut shapes = vec![input];
        let mut workspace = input.len();
        for (i, node) in nodes.iter().enumerate() {
            let at = || format!("node '{}' ({})", node.name, node.op.kind());
            match node.op.arity() {
                Some(n) if node.inputs.len() != n => bail!("{}: expects {} input(s), got {}", at(), n, node.inputs.len()),
                None if node.inputs.is_empty() => bail!("{}: expects at least 1 input, got 0", at()),
                _ => {}
            }
            for &v in &node.inputs {
                if v > i {
                    bail!("{}: input value {} is not produced before this node", at(), v);
                }
            }
            let x = shapes[node.inputs[0]];
            let out = match &node.op {
                Op::Conv(c) => {
                    if c.in_channels != x.c {
                        bail!("{}: weight expects {} input channels, input has {}", at(), c.in_channels, x.c);
                    }
                    let expect = within(c.out_channels.checked_mul(c.in_channels).and_then(|n| n.checked_mul(c.kernel[0])).and_then(|n| n.checked_mul(c.kernel[1])), MAX_ELEMENTS);
                    if expect != Some(c.weight.len()) || c.weight.is_empty() {
                        bail!(
                            "{}: weight has {} values, shape {}x{}x{}x{} needs {}",
                            at(),
                            c.weight.len(),
                            c.out_channels,
                            c.in_channels,
                            c.kernel[0],
                            c.kernel[1],
                            expect.map_or("too many".into(), |n| n.to_string())
                        );
                    }
                    if let Some(b) = &c.bias {
                        if b.len() != c.out_channels {
                            bail!("{}: bias has {} values, expected {}", at(), b.len(), c.out_channels);
                        }
                    }
                    let h = conv_out(x.h, c.pads[0], c.pads[2], c.kernel[0], c.stride[0]);
                    let w = conv_out(x.w, c.pads[1], c.pads[3], c.kernel[1], c.stride[1]);
                    let out = match (h, w) {
                        (Some(h), Some(w)) => Shape { c: c.out_channels, h, w },
                        _ => bail!("{}: kernel {:?} stride {:?} pads {:?} do not fit input {}x{}", at(), c.kernel, c.stride, c.pads, x.h, x.w),
                    };
                    // The im2col buffer: one column of in × kh × kw values per output pixel.
                    let cols = out.h.checked_mul(out.w).and_then(|n| n.checked_mul(c.in_channels * c.kernel[0] * c.kernel[1]));
                    if within(cols, MAX_WORKSPACE).is_none() {
                        bail!("{}: unfolding the input for a {}x{} kernel over {}x{} outputs takes more than 2^28 values", at(), c.kernel[0], c.kernel[1], out.h, out.w);
                    }
                    out
                }
                Op::BatchNorm(b) => {
                    for (field, v) in [("scale", &b.scale), ("bias", &b.bias), ("mean", &b.mean), ("var", &b.var)] {
                        if v.len() != x.c {
                            bail!("{}: {} has {} values, input has {} channels", at(), field, v.len(), x.c);
                        }
                    }
                    if !(b.eps >= 0.0) {
                        bail!("{}: epsilon {} must be >= 0", at(), b.eps);
                    }
                    x
                }
                Op::Relu => x,
                Op::Hardtanh { min, max } => {
                    if !(min < max) {
                        bail!("{}: min {} must be below max {}", at(), min, max);
                    }
                    x
                }
                Op::Binary(b) => {
                    let y = match &b.constant {
                        None => shapes[node.inputs[1]],
                        Some(k) => {
                            if within(k.shape.checked_len(), MAX_ELEMENTS).filter(|&n| n > 0) != Some(k.values.len()) {
                                bail!(
                                    "{}: constant has {} values, shape {}x{}x{} needs {}",
                                    at(),
                                    k.values.len(),
                                    k.shape.c,
                                    k.shape.h,
                                    k.shape.w,
                                    k.shape.checked_len().map_or("too many".into(), |n| n.to_string())
                                );
                            }
                            k.shape
                        }
                    };
                    match broadcast(x, y) {
                        Some(s) => s,
                        None => bail!("{}: operand shapes {}x{}x{} and {}x{}x{} do not broadcast", at(), x.c, x.h, x.w, y.c, y.h, y.w),
                    }
                }
                Op::Activation(a) => {
                    let (alpha, beta) = match *a {
                        Activation::HardSigmoid { alpha, beta } => (alpha, beta),
                        Activation::LeakyRelu { alpha } => (alpha, 0.0),
                        Activation::Sigmoid | Activation::HardSwish => (0.0, 0.0),
                    };
                    if !(alpha.is_finite() && beta.is_finite()) {
                        bail!("{}: alpha {} and beta {} must be finite", at(), alpha, beta);
                    }
                    x
                }
                Op::Slice(s) => {
                    let mut dims = [0usize; 2];
                    for (a, size) in [x.h, x.w].into_iter().enumerate() {
                        if s.step[a] == 0 || s.end[a] > size || s.start[a] >= s.end[a] {
                            bail!("{}: slice start {} end {} step {} does not fit size {}", at(), s.start[a], s.end[a], s.step[a], size);
                        }
                        dims[a] = (s.end[a] - s.start[a]).div_ceil(s.step[a]);
                    }
                    Shape { c: x.c, h: dims[0], w: dims[1] }
                }
                Op::PadChannels { before, after } => Shape { c: x.c + before + after, ..x },
                Op::SliceChannels { start, end } => {
                    if !(start < end && *end <= x.c) {
                        bail!("{}: channels {start}..{end} are not a non-empty range of the input's {}", at(), x.c);
                    }
                    Shape { c: end - start, ..x }
                }
                Op::Transpose { perm } => match transposed(x, *perm) {
                    Some(s) => s,
                    None => bail!("{}: perm {:?} is not a permutation of the axes 0, 1, 2", at(), perm),
                },
                Op::MaxPool(p) | Op::AvgPool(p) => {
                    let h = pool_out(x.h, p.pads[0], p.pads[2], p.kernel[0], p.stride[0], p.ceil_mode);
                    let w = pool_out(x.w, p.pads[1], p.pads[3], p.kernel[1], p.stride[1], p.ceil_mode);
                    match (h, w) {
                        (Some(h), Some(w)) => Shape { c: x.c, h, w },
                        _ => bail!("{}: kernel {:?} stride {:?} pads {:?} do not fit input {}x{} (each pad must be below the kernel)", at(), p.kernel, p.stride, p.pads, x.h, x.w),
                    }
                }
                Op::GlobalAvgPool | Op::GlobalMaxPool => Shape { c: x.c, h: 1, w: 1 },
                Op::Concat => {
                    let mut c = 0usize;
                    for &v in &node.inputs {
                        let y = shapes[v];
                        if (y.h, y.w) != (x.h, x.w) {
                            bail!("{}: input shapes {}x{}x{} and {}x{}x{} differ in height or width", at(), x.c, x.h, x.w, y.c, y.h, y.w);
                        }
                        c = c.saturating_add(y.c);
                    }
                    Shape { c, ..x }
                }
                Op::Flatten => Shape { c: x.len(), h: 1, w: 1 },
                Op::Linear(l) => {
                    if x.len() != l.in_features {
                        bail!("{}: expects {} input features, input has {}", at(), l.in_features, x.len());
                    }
                    let expect = within(l.in_features.checked_mul(l.out_features), MAX_ELEMENTS);
                    if expect != Some(l.weight.len()) || l.weight.is_empty() {
                        bail!("{}: weight has {} values, shape {}x{} needs {}", at(), l.weight.len(), l.out_features, l.in_features, expect.map_or("too many".into(), |n| n.to_string()));
                    }
                    if let Some(b) = &l.bias {
                        if b.len() != l.out_features {
                            bail!("{}: bias has {} values, expected {}", at(), b.len(), l.out_features);
                        }
                    }
                    Shape { c: l.out_features, h: 1, w: 1 }
                }
            };
            let Some(len) = within(out.checked_len(), MAX_ELEMENTS).filter(|&n| n > 0) else {
                bail!("{}: output shape {}x{}x{} is empty or too large", at(), out.c, out.h, out.w);
            };
            workspace += len;
            if workspace > MAX_WORKSPACE {
                bail!("{}: the activations up to this node take {} values, more than the limit of 2^28", at(), workspace);
            }
            shapes.push(out);
        }
        if output >= shapes.len() {
            bail!("network output value {} does not exist ({} values)", output, shapes.len());
        }
        let geometry = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match &n.op {
                Op::Conv(c) => crate::layers::Geometry::new(c, shapes[n.inputs[0]], shapes[i + 1]),
                _ => Default::default(),
            })
            .collect();
        let readers = |v: usize| nodes.iter().map(|n| n.inputs.iter().filter(|&&u| u == v).count()).sum::<usize>();
        let relu_after = (0..nodes.len())
            .map(|i| {
                matches!(nodes[i].op, Op::Conv(_) | Op::BatchNorm(_) | Op::Binary(_))
                    && nodes.get(i + 1).is_some_and(|r| matches!(r.op, Op::Relu) && r.inputs == [i + 1])
                    && output != i + 1
                    && readers(i + 1) == 1
            })
            .collect();
        Ok(Network { input, nodes, output, shapes, geometry, relu_after })
    }

    pub fn classes(&self) -> usize {
        self.shapes[self.output].len()
    }

    /// Multiply-adds of one image's forward pass through the Conv and Linear
    /// layers (the products every engine and the trainer compute).
    pub fn macs(&self) -> u64 {
        let per = |i: usize, node: &Node| match &node.op {
            Op::Conv(c) => (c.out_channels * c.in_channels * c.kernel[0] * c.kernel[1] * self.shapes[i + 1].h * self.shapes[i + 1].w) as u64,
            Op::Linear(l) => (l.out_features * l.in_features) as u64,
            _ => 0,
        };
        self.nodes.iter().enumerate().map(|(i, n)| per(i, n)).sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn conv(weight: usize, shape: [usize; 4], pads: [usize; 4]) -> Node {
        let [out_channels, in_channels, kh, kw] = shape;
        let op = Op::Conv(Conv { weight: vec![1.0; weight], bias: None, out_channels, in_channels, kernel: [kh, kw], stride: [1, 1], pads });
        Node { name: "c".into(), op, inputs: vec![0] }
    }

    fn error(input: Shape, nodes: Vec<Node>) -> String {
        let output = nodes.len();
        Network::new(input, nodes, output).unwrap_err().0
    }

    #[test]
    fn sizes_that_overflow_are_refused() {
        let one = Shape { c: 1, h: 1, w: 1 };
        // 4295030752 × 4294903841 wraps to 268366816 (< 2^28) in 64 bits.
        let e = error(one, vec![conv(1, [1, 1, 1, 1], [4294967295, 0, 63456, 4294903840])]);
        assert!(e.contains("takes more than 2^28 values"), "{e}");
        let e = error(one, vec![conv(1, [1 << 40, 1, 1 << 40, 1 << 40], [0; 4])]);
        assert!(e.contains("needs too many"), "{e}");
        let e = error(one, vec![conv(1, [1, 1, 1, 1], [usize::MAX, 0, 0, 0])]);
        assert!(e.contains("do not fit input"), "{e}");
        assert!(error(Shape { c: 1 << 32, h: 1 << 32, w: 1 }, vec![]).contains("empty or too large"));
    }

    pub(crate) fn bn(input: usize) -> Node {
        let b = BatchNorm { scale: vec![1.5, -2.0], bias: vec![0.25, 0.5], mean: vec![0.1, -0.3], var: vec![0.5, 2.0], eps: 1e-5 };
        Node { name: "bn".into(), op: Op::BatchNorm(b), inputs: vec![input] }
    }

    pub(crate) fn relu(input: usize) -> Node {
        Node { name: "r".into(), op: Op::Relu, inputs: vec![input] }
    }

    #[test]
    fn a_batch_norm_or_binary_only_the_next_relu_reads_is_fused() {
        let s = Shape { c: 2, h: 3, w: 3 };
        let fused = |nodes: Vec<Node>, output: usize| Network::new(s, nodes, output).unwrap().relu_after;
        assert_eq!(fused(vec![bn(0), relu(1)], 2), [true, false]);
        // The BatchNorm's value is the output, or read twice, or read by a ReLU further on, or the ReLU reads another value.
        assert_eq!(fused(vec![bn(0), relu(1)], 1), [false, false]);
        assert_eq!(fused(vec![bn(0), relu(1), relu(1)], 3), [false, false, false]);
        assert_eq!(fused(vec![bn(0), relu(0), relu(1)], 3), [false, false, false]);
        assert_eq!(fused(vec![bn(0), relu(0)], 2), [false, false]);
        assert_eq!(fused(vec![relu(0), bn(1), relu(2), bn(3), relu(4)], 5), [false, true, false, true, false]);
        // An elementwise Binary too (the residual Add), but not a ReLU after a ReLU.
        let add = |a: usize, b: usize| Node { name: "add".into(), op: Op::Binary(Binary { arith: Arith::Add, constant: None }), inputs: vec![a, b] };
        assert_eq!(fused(vec![relu(0), add(1, 0), relu(2)], 3), [false, true, false]);
        assert_eq!(fused(vec![relu(0), add(1, 0), relu(2), add(2, 3)], 4), [false, false, false, false]);
        assert_eq!(fused(vec![relu(0), relu(1)], 2), [false, false]);
        // A Conv (1 × 1, keeping the shape) too.
        assert_eq!(fused(vec![conv(4, [2, 2, 1, 1], [0; 4]), relu(1)], 2), [true, false]);
        assert_eq!(fused(vec![conv(4, [2, 2, 1, 1], [0; 4]), relu(1), relu(1)], 3), [false, false, false]);
    }

    #[test]
    fn the_workspace_is_bounded() {
        // Each 2^26-value activation is allowed, five of them together are not.
        let relu = || Node { name: "r".into(), op: Op::Relu, inputs: vec![0] };
        let e = error(Shape { c: 1, h: 8192, w: 8192 }, vec![relu(), relu(), relu(), relu()]);
        assert!(e.contains("node 'r' (Relu): the activations up to this node take 335544320 values"), "{e}");
        assert!(Network::new(Shape { c: 1, h: 8192, w: 8192 }, vec![relu(), relu(), relu()], 3).is_ok());
    }

    #[test]
    fn macs_count_the_products_of_conv_and_linear() {
        // 3×3 conv 2→4 with padding 1 on 5×5 (output 5×5), ReLU, 4×3 conv valid (output 3×3), Flatten, Linear 36→10.
        let mut c2 = conv(4 * 4 * 3 * 3, [4, 4, 3, 3], [0; 4]);
        c2.inputs = vec![2];
        let relu = Node { name: "r".into(), op: Op::Relu, inputs: vec![1] };
        let flat = Node { name: "f".into(), op: Op::Flatten, inputs: vec![3] };
        let fc = Node { name: "l".into(), op: Op::Linear(Linear { weight: vec![0.0; 360], bias: None, out_features: 10, in_features: 36 }), inputs: vec![4] };
        let net = Network::new(Shape { c: 2, h: 5, w: 5 }, vec![conv(4 * 2 * 9, [4, 2, 3, 3], [1; 4]), relu, c2, flat, fc], 5).unwrap();
        assert_eq!(net.macs(), (4 * 2 * 9 * 25 + 4 * 4 * 9 * 9 + 360) as u64);
    }
}
