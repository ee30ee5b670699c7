"""Inference kernels: time-major convolutions and the compiled CPU kernels with their bindings.

Imports only ``torch`` and the standard library."""
