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
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
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
    Hardtanh { min: f32, max: f32 },
    Add,
    Slice(Slice),
    /// Zero channels added before and after (the option-A shortcut's Pad).
    PadChannels { before: usize, after: usize },
    GlobalAvgPool,
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
            Op::Add => "Add",
            Op::Slice(_) => "Slice",
            Op::PadChannels { .. } => "PadChannels",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::Flatten => "Flatten",
            Op::Linear(_) => "Linear",
        }
    }

    fn arity(&self) -> usize {
        match self {
            Op::Add => 2,
            _ => 1,
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
}

fn conv_out(size: usize, pad_a: usize, pad_b: usize, k: usize, stride: usize) -> Option<usize> {
    let padded = size + pad_a + pad_b;
    if k == 0 || stride == 0 || padded < k {
        return None;
    }
    Some((padded - k) / stride + 1)
}

/// Upper bound on elements of any one activation or weight tensor: refuses
/// absurd declared sizes before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 28;

impl Network {
    /// Checks every node's inputs, parameters and shapes; errors name the node.
    pub fn new(input: Shape, nodes: Vec<Node>, output: usize) -> Result<Network> {
        if input.len() == 0 || input.len() > MAX_ELEMENTS {
            bail!("network input shape {}x{}x{} is empty or too large", input.c, input.h, input.w);
        }
        let mut shapes = vec![input];
        for (i, node) in nodes.iter().enumerate() {
            let at = || format!("node '{}' ({})", node.name, node.op.kind());
            if node.inputs.len() != node.op.arity() {
                bail!("{}: expects {} input(s), got {}", at(), node.op.arity(), node.inputs.len());
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
                    let expect = c.out_channels * c.in_channels * c.kernel[0] * c.kernel[1];
                    if c.weight.len() != expect || expect == 0 {
                        bail!("{}: weight has {} values, shape needs {}", at(), c.weight.len(), expect);
                    }
                    if let Some(b) = &c.bias {
                        if b.len() != c.out_channels {
                            bail!("{}: bias has {} values, expected {}", at(), b.len(), c.out_channels);
                        }
                    }
                    let h = conv_out(x.h, c.pads[0], c.pads[2], c.kernel[0], c.stride[0]);
                    let w = conv_out(x.w, c.pads[1], c.pads[3], c.kernel[1], c.stride[1]);
                    match (h, w) {
                        (Some(h), Some(w)) => Shape { c: c.out_channels, h, w },
                        _ => bail!("{}: kernel {:?} stride {:?} pads {:?} do not fit input {}x{}", at(), c.kernel, c.stride, c.pads, x.h, x.w),
                    }
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
                Op::Add => {
                    let y = shapes[node.inputs[1]];
                    if x != y {
                        bail!("{}: operand shapes {}x{}x{} and {}x{}x{} differ", at(), x.c, x.h, x.w, y.c, y.h, y.w);
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
                Op::GlobalAvgPool => Shape { c: x.c, h: 1, w: 1 },
                Op::Flatten => Shape { c: x.len(), h: 1, w: 1 },
                Op::Linear(l) => {
                    if x.len() != l.in_features {
                        bail!("{}: expects {} input features, input has {}", at(), l.in_features, x.len());
                    }
                    if l.weight.len() != l.in_features * l.out_features || l.weight.is_empty() {
                        bail!("{}: weight has {} values, shape needs {}", at(), l.weight.len(), l.in_features * l.out_features);
                    }
                    if let Some(b) = &l.bias {
                        if b.len() != l.out_features {
                            bail!("{}: bias has {} values, expected {}", at(), b.len(), l.out_features);
                        }
                    }
                    Shape { c: l.out_features, h: 1, w: 1 }
                }
            };
            if out.len() == 0 || out.len() > MAX_ELEMENTS {
                bail!("{}: output shape {}x{}x{} is empty or too large", at(), out.c, out.h, out.w);
            }
            shapes.push(out);
        }
        if output >= shapes.len() {
            bail!("network output value {} does not exist ({} values)", output, shapes.len());
        }
        Ok(Network { input, nodes, output, shapes })
    }

    pub fn classes(&self) -> usize {
        self.shapes[self.output].len()
    }
}
