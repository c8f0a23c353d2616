//! ADPCM in WAV decoded by the kit, block by block: symphonia's reader hands over packets of
//! whole blocks, each decoded on its own (`ms_adpcm`, `ima_adpcm`).

/// One ADPCM variant: the size of its blocks and how one decodes.
pub(crate) trait BlockCodec: Send {
    fn channels(&self) -> usize;
    /// Bytes in one block.
    fn block_bytes(&self) -> usize;
    /// Append one block's interleaved samples to `out`; `None` when the block is invalid.
    fn block(&self, block: &[u8], out: &mut Vec<f32>) -> Option<()>;
}

pub(crate) struct Adpcm {
    codec: Box<dyn BlockCodec>,
    out: Vec<f32>,
}

impl Adpcm {
    pub(crate) fn new(codec: impl BlockCodec + 'static) -> Self {
        Self {
            codec: Box::new(codec),
            out: Vec::new(),
        }
    }

    pub(crate) fn channels(&self) -> usize {
        self.codec.channels()
    }

    /// Decode a packet of whole blocks to interleaved samples; `None` when the packet is not
    /// whole blocks or a block is invalid.
    pub(crate) fn decode(&mut self, packet: &[u8]) -> Option<&[f32]> {
        let size = self.codec.block_bytes();
        if packet.is_empty() || !packet.len().is_multiple_of(size) {
            return None;
        }
        self.out.clear();
        for block in packet.chunks_exact(size) {
            self.codec.block(block, &mut self.out)?;
        }
        Some(&self.out)
    }
}
