"""Mels and audio around a vocoder: convention checks and adapters, quality metrics, the denoiser."""
