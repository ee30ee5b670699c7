"""The shared layers the plugins compose: upsamplers, output distributions, the gated WaveNet stack,
normalising flows."""
