//! Operation counts: what the engine actually did, per layer, summed over
//! the evaluated images. The cost model turns these into energy, latency
//! and area.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpCounts {
    /// Images this layer processed.
    pub images: u64,
    /// Activations of a physical subarray by one input vector and stream.
    pub subarray_reads: u64,
    /// Cells read (every cell of every active column, zeros included).
    pub cell_reads: u64,
    /// Row-driver (DAC) drives.
    pub dac_drives: u64,
    /// Row drives with a nonzero input digit (the rows that draw current):
    /// data-dependent, summed over streams and pixels, once per row.
    pub active_rows: u64,
    /// Σ over row drives of the input digit squared (a row's V², in units
    /// of one digit step): with `cell_load` it gives the cells' read energy.
    pub drive_sq: u128,
    /// Σ over row drives of the input digit squared × the sum of the digits
    /// stored on that row's cells (all slices, columns and reference cells).
    pub cell_load: u128,
    /// The three sums above with each drive counted once per read pulse it
    /// holds: one per read, T when an MTJ samples the read T times (T may
    /// differ between input streams). Energy follows the pulses.
    pub pulse_rows: u64,
    pub pulse_sq: u128,
    pub pulse_load: u128,
    /// Partial sums converted (one per subarray, slice, stream, column, pixel).
    pub conversions: u64,
    /// MTJ write/read/reset cycles.
    pub mtj_samples: u64,
    /// Converted values shifted and added into an accumulator.
    pub shift_adds: u64,
    /// Multiply-accumulates done digitally (layers kept in FP32).
    pub digital_macs: u64,
    /// Other digital element operations (rescale, bias, BatchNorm, ReLU, add, pooling).
    pub digital_ops: u64,
    /// Smallest and largest partial sum seen before conversion.
    pub ps_min: f32,
    pub ps_max: f32,
}

impl Default for OpCounts {
    fn default() -> Self {
        OpCounts {
            images: 0,
            subarray_reads: 0,
            cell_reads: 0,
            dac_drives: 0,
            active_rows: 0,
            drive_sq: 0,
            cell_load: 0,
            pulse_rows: 0,
            pulse_sq: 0,
            pulse_load: 0,
            conversions: 0,
            mtj_samples: 0,
            shift_adds: 0,
            digital_macs: 0,
            digital_ops: 0,
            ps_min: f32::INFINITY,
            ps_max: f32::NEG_INFINITY,
        }
    }
}

impl OpCounts {
    /// One row's drives over a stream: `nonzero` driven pixels, `sq` = Σ
    /// digit², on a row whose cells store digits summing to `load`, each
    /// drive held for `pulses` read pulses.
    #[inline]
    pub fn count_drives(&mut self, nonzero: u64, sq: u64, load: u64, pulses: u32) {
        let (pulses, sq_load) = (pulses as u64, sq as u128 * load as u128);
        self.active_rows += nonzero;
        self.drive_sq += sq as u128;
        self.cell_load += sq_load;
        self.pulse_rows += nonzero * pulses;
        self.pulse_sq += sq as u128 * pulses as u128;
        self.pulse_load += sq_load * pulses as u128;
    }

    /// Counts are sums and ranges are min/max, so merging in any order gives
    /// the same totals.
    pub fn merge(&mut self, o: &OpCounts) {
        self.images += o.images;
        self.subarray_reads += o.subarray_reads;
        self.cell_reads += o.cell_reads;
        self.dac_drives += o.dac_drives;
        self.active_rows += o.active_rows;
        self.drive_sq += o.drive_sq;
        self.cell_load += o.cell_load;
        self.pulse_rows += o.pulse_rows;
        self.pulse_sq += o.pulse_sq;
        self.pulse_load += o.pulse_load;
        self.conversions += o.conversions;
        self.mtj_samples += o.mtj_samples;
        self.shift_adds += o.shift_adds;
        self.digital_macs += o.digital_macs;
        self.digital_ops += o.digital_ops;
        self.ps_min = self.ps_min.min(o.ps_min);
        self.ps_max = self.ps_max.max(o.ps_max);
    }
}
