//! A network ready to classify, with its crossbar layers programmed (or
//! none: digital FP32), that keeps the operation counts of every image it
//! has classified, so that costing them needs nothing from its caller.

use std::sync::{Arc, Mutex};

use crate::bail;
use crate::cost::{self, LayerCost, Tech};
use crate::counts::OpCounts;
use crate::engine::{self, Crossbars};
use crate::error::Result;
use crate::graph::Network;

pub struct Simulator {
    pub net: Arc<Network>,
    pub crossbars: Option<Crossbars>,
    /// Per node, summed over every `forward` so far (sums and min/max, so
    /// the order of concurrent batches does not change them).
    counts: Mutex<Vec<OpCounts>>,
}

impl Simulator {
    pub fn new(net: Arc<Network>, crossbars: Option<Crossbars>) -> Simulator {
        let counts = Mutex::new(vec![OpCounts::default(); net.nodes.len()]);
        Simulator { net, crossbars, counts }
    }

    /// Logits `[n × classes]` of `n` images packed in `images`, numbered
    /// `first, first + 1, …` for the random draws; adds their counts.
    pub fn forward(&self, images: &[f32], first: usize) -> Result<Vec<f32>> {
        let (logits, ops) = engine::forward(&self.net, self.crossbars.as_ref(), images, first)?;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter_mut().zip(&ops).for_each(|(c, o)| c.merge(o));
        Ok(logits)
    }

    /// The operation counts per node so far.
    pub fn counts(&self) -> Vec<OpCounts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Cost per node of one image, averaged over the images classified so far.
    pub fn cost(&self, tech: &Tech) -> Result<Vec<LayerCost>> {
        let counts = self.counts();
        if counts.iter().all(|c| c.images == 0) {
            bail!("cost: no image has been classified yet; costs come from the operations of real images");
        }
        Ok(cost::cost(&self.net, self.crossbars.as_ref(), &counts, tech))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Linear, Node, Op, Shape};

    fn tiny() -> Arc<Network> {
        let linear = Op::Linear(Linear { weight: (0..12).map(|i| i as f32 * 0.1 - 0.5).collect(), bias: None, out_features: 3, in_features: 4 });
        let nodes = vec![Node { name: "flat".into(), op: Op::Flatten, inputs: vec![0] }, Node { name: "fc".into(), op: linear, inputs: vec![1] }];
        Arc::new(Network::new(Shape { c: 4, h: 1, w: 1 }, nodes, 2).unwrap())
    }

    #[test]
    fn counts_add_up_over_batches_in_any_order() {
        let images: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let whole = Simulator::new(tiny(), None);
        whole.forward(&images, 0).unwrap();
        let parts = Simulator::new(tiny(), None);
        parts.forward(&images[24..], 6).unwrap();
        parts.forward(&images[..24], 0).unwrap();
        assert_eq!(parts.counts(), whole.counts());
        assert_eq!(whole.counts()[1].images, 10);
        assert_eq!(whole.counts()[1].digital_macs, 10 * 12);
    }

    #[test]
    fn cost_needs_classified_images() {
        let sim = Simulator::new(tiny(), None);
        let err = sim.cost(&crate::cost::tests::tech()).unwrap_err();
        assert!(err.0.contains("no image"), "{}", err.0);
    }
}
