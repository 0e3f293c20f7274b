//! Runs a network over a batch of images. Images are independent and each is
//! computed by one thread with a fixed operation order, so the logits do not
//! depend on the thread count or the batch size.

use rayon::prelude::*;

use crate::bail;
use crate::error::Result;
use crate::graph::{Network, Op};
use crate::layers;

/// Per-thread buffers, sized once from the network's shapes.
pub struct Workspace {
    values: Vec<Vec<f32>>,
    cols: Vec<f32>,
}

impl Workspace {
    pub fn new(net: &Network) -> Workspace {
        let cols = net
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match &n.op {
                Op::Conv(c) => layers::conv_rows(c) * net.shapes[i + 1].h * net.shapes[i + 1].w,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        Workspace { values: net.shapes.iter().map(|s| vec![0f32; s.len()]).collect(), cols: vec![0f32; cols] }
    }

    /// Forward pass of one image; returns the output value.
    pub fn forward(&mut self, net: &Network, image: &[f32]) -> &[f32] {
        self.values[0].copy_from_slice(image);
        for (i, node) in net.nodes.iter().enumerate() {
            let (done, rest) = self.values.split_at_mut(i + 1);
            let out = &mut rest[0][..];
            let x = &done[node.inputs[0]][..];
            let xs = net.shapes[node.inputs[0]];
            let os = net.shapes[i + 1];
            match &node.op {
                Op::Conv(c) => layers::conv(c, x, xs, out, os, &mut self.cols),
                Op::BatchNorm(b) => layers::batch_norm(b, x, out, xs.h * xs.w),
                Op::Relu => layers::relu(x, out),
                Op::Add => layers::add(x, &done[node.inputs[1]], out),
                Op::Slice(s) => layers::slice(s, x, xs, out, os),
                Op::PadChannels { before, .. } => layers::pad_channels(*before, x, xs.h * xs.w, out),
                Op::GlobalAvgPool => layers::global_avg_pool(x, xs.h * xs.w, out),
                Op::Flatten => out.copy_from_slice(x),
                Op::Linear(l) => layers::linear(l, x, out),
            }
        }
        &self.values[net.output]
    }
}

/// Logits `[n × classes]` for `n` images packed in `images`.
pub fn forward(net: &Network, images: &[f32]) -> Result<Vec<f32>> {
    let len = net.input.len();
    if images.len() % len != 0 {
        bail!("image buffer has {} values, not a multiple of the input size {}", images.len(), len);
    }
    let classes = net.classes();
    let mut logits = vec![0f32; images.len() / len * classes];
    logits
        .par_chunks_mut(classes)
        .zip(images.par_chunks(len))
        .for_each_init(|| Workspace::new(net), |ws, (out, image)| out.copy_from_slice(ws.forward(net, image)));
    Ok(logits)
}

/// A rayon pool of exactly `threads` workers (0 = one per core).
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| crate::error::Error::new(format!("cannot start {threads} threads: {e}")))
}
